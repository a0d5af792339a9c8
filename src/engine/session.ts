/**
 * A session: one launcher's table of handles, as pg_background keeps one per
 * backend. It launches jobs on pooled workers, and answers result, detach,
 * cancel, wait, list, stats and progress for the handles it tracks.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import { cookiesEqual } from './cookie.js';
import { errors, PgbgError, SqlState } from '../protocol/errors.js';
import { Job } from './job.js';
import { CANCEL_GRACE_MS, LABEL_BYTES, MAX_WORKERS, WAIT_TIMEOUT_MS, clamp, parseTimeSetting, resolveQueueSize } from './limits.js';
import type {
  FieldInfo, Handle, HandleRef, JobResult, JobSnapshot, LaunchOptions, Progress, RawResult, SessionSettings, SessionStats, Notice, ReadyResult,
} from './types.js';
import type { EngineCore, TrackedJob } from './core.js';
import { delay, guardedWait } from './deadlock-guard.js';
import { executeJob } from './execute.js';
import { classifyStatements } from '../sql/classify.js';
import { jobSnapshot } from './snapshot.js';
import { captureLaunchContext, type LaunchContext } from '../sql/launch-context.js';
import type { Login } from '../workers/pool.js';
import type { WorkerConnection } from '../workers/worker.js';
import { rowParser } from './rows.js';
import { resultStreams } from './result-streams.js';

export interface SessionInit {
  login: Login;
  launcher?: pg.ClientBase | undefined;
  context?: LaunchContext | undefined;
  settings?: Partial<SessionSettings> | undefined;
  /** Called once, when the session closes. */
  onClose?: (() => void) | undefined;
}

const CONSUMED_MEMORY = 1024;

/** Session = one launcher's table of handles (TrackedJobs), as pg_background keeps one per backend. */
export class Session {
  readonly settings: SessionSettings;
  readonly #jobs = new Map<number, TrackedJob>();
  /** pid → cookie of handles whose results were read, so a second read says "consumed". */
  readonly #consumed = new Map<number, bigint>();
  /** Notices of results read, by pid, until handed out (deliverNotices). */
  readonly #undeliveredNotices = new Map<number, Notice[]>();
  /** Launches under way, each holding a slot; listed as `starting` (pid 0) once they wait for a worker. */
  readonly #launching = new Map<Job, TrackedJob | undefined>();
  #closed = false;
  #stats = { launched: 0, completed: 0, failed: 0, canceled: 0, timedOut: 0, totalMs: 0, timed: 0 };

  constructor(
    private readonly core: EngineCore,
    private readonly init: SessionInit,
    private readonly logger: Logger,
  ) {
    this.settings = { maxWorkers: MAX_WORKERS.default, defaultQueueSize: 64 * 1024, workerTimeoutMs: 0, customSettings: [], preparedCapture: true, ...init.settings };
  }

  /** The login this session's workers use. */
  get login(): Login {
    return this.init.login;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Starts `sql` in a background worker; resolves once the worker has it. */
  launch(sql: string, options: LaunchOptions = {}): Promise<Handle> {
    return this.#launch(sql, options, false);
  }

  /** Like launch, but results are disabled: rows are discarded as they arrive. */
  submit(sql: string, options: LaunchOptions = {}): Promise<Handle> {
    return this.#launch(sql, options, true);
  }

  /** The whole result, rows parsed to JavaScript values (objects keyed by column name). */
  async result<R = Record<string, unknown>>(ref: HandleRef, options: { rowMode?: 'object' | 'array' } = {}): Promise<JobResult<R>> {
    const raw = await this.rawResult(ref);
    const parse = rowParser<R>(raw.fields, options.rowMode ?? 'object');
    const rows: R[] = [];
    for await (const row of raw.rows) rows.push(parse(row));
    return { fields: raw.fields, rows, commandTags: raw.commandTags(), notices: raw.notices };
  }

  /** The result as an async iterator of parsed rows; memory stays bounded by the queue size. */
  async *rows<R = Record<string, unknown>>(ref: HandleRef, options: { rowMode?: 'object' | 'array' } = {}): AsyncGenerator<R> {
    const raw = await this.rawResult(ref);
    const parse = rowParser<R>(raw.fields, options.rowMode ?? 'object');
    for await (const row of raw.rows) yield parse(row);
  }

  /**
   * The result with text values, for relaying. Resolves once the columns are
   * known; a worker error is raised here (or while iterating, if it happened
   * after rows were sent). Consumable once.
   */
  async rawResult(ref: HandleRef): Promise<RawResult> {
    const tracked = this.#lookup(ref, { allowConsumed: false });
    const { job } = tracked;
    if (job.resultsDisabled) throw errors.resultsDisabled(job.pid);
    job.consumed = true;
    try {
      await guardedWait(this.core, tracked, async () => {
        while (!job.fields && !job.ended) await job.changed();
      });
    } catch (err) {
      this.#forget(tracked, true);
      throw err;
    }
    if (!job.fields) {
      this.#forget(tracked, true);
      throw this.#failure(tracked) ?? errors.lostConnection(job.pid, 'The worker ended without a result.');
    }
    return resultStreams(job, {
      wait: (w) => guardedWait(this.core, tracked, w),
      failure: () => this.#failure(tracked),
      done: () => this.#forget(tracked, true),
    });
  }

  /**
   * The result's columns, without consuming it: waits until they are known. A
   * job that failed before producing any raises its error here (and counts as read).
   */
  async describe(ref: HandleRef): Promise<FieldInfo[]> {
    const tracked = this.#lookup(ref, { allowConsumed: false });
    const { job } = tracked;
    if (job.resultsDisabled) throw errors.resultsDisabled(job.pid);
    await guardedWait(this.core, tracked, async () => {
      while (!job.fields && !job.ended) await job.changed();
    });
    if (job.fields) return job.fields;
    this.#forget(tracked, true);
    throw this.#failure(tracked) ?? errors.lostConnection(job.pid, 'The worker ended without a result.');
  }

  /**
   * Waits until the job has ended or its unread rows fill its queue — what one
   * read can take at once — under the same self-deadlock guard as `wait`.
   */
  async awaitRows(ref: HandleRef): Promise<void> {
    const tracked = this.#lookup(ref, { allowConsumed: false });
    const { job } = tracked;
    await guardedWait(this.core, tracked, async () => {
      while (!job.ended && !job.stalled) await job.changed();
    });
  }

  /** Stops tracking the handle; the job keeps running and commits. */
  detach(ref: HandleRef): void {
    const tracked = this.#lookup(ref, { allowConsumed: false });
    tracked.job.discard();
    this.#forget(tracked, false);
    this.logger.debug({ pid: tracked.job.pid }, 'job detached');
  }

  /**
   * Cancels the job: nothing of it commits. With a grace period, asks first
   * (the protocol's cancel request) and terminates the backend only if it has
   * not stopped when the period ends; without one, terminates at once.
   * Resolves when the job has ended.
   */
  async cancel(ref: HandleRef, options: { graceMs?: number; cooperative?: boolean } = {}): Promise<void> {
    const tracked = this.#lookup(ref, { allowConsumed: true });
    await this.core.cancelJob(tracked, clamp(options.graceMs ?? 0, CANCEL_GRACE_MS), { cooperative: options.cooperative ?? false });
  }

  /** Waits until the job has finished. */
  async wait(ref: HandleRef): Promise<void> {
    const tracked = this.#lookup(ref, { allowConsumed: true });
    await guardedWait(this.core, tracked, () => this.#waitStep(tracked));
  }

  /** Waits up to `timeoutMs`; true if the job finished in time. */
  async waitTimeout(ref: HandleRef, timeoutMs: number): Promise<boolean> {
    const tracked = this.#lookup(ref, { allowConsumed: true });
    const deadline = Date.now() + clamp(timeoutMs, WAIT_TIMEOUT_MS);
    return guardedWait(this.core, tracked, async () => {
      while (!tracked.job.ended) {
        const left = deadline - Date.now();
        if (left <= 0) return false;
        await Promise.race([tracked.job.changed(), delay(left)]);
      }
      return true;
    });
  }

  /** The latest progress the job reported (pct -1 before any report). */
  progress(ref: HandleRef): Progress {
    return this.#lookup(ref, { allowConsumed: true }).job.progress;
  }

  /** The handles this session tracks. */
  list(): JobSnapshot[] {
    const waiting = [...this.#launching.values()].filter((t) => t !== undefined);
    return [...this.#jobs.values(), ...waiting].map(jobSnapshot);
  }

  stats(): SessionStats {
    const s = this.#stats;
    let active = 0;
    for (const e of this.#jobs.values()) if (!e.job.ended) active++;
    return {
      workersLaunched: s.launched,
      workersCompleted: s.completed,
      workersFailed: s.failed,
      workersCanceled: s.canceled,
      workersTimedOut: s.timedOut,
      workersActive: active,
      avgExecutionMs: s.timed === 0 ? 0 : s.totalMs / s.timed,
      maxWorkers: this.settings.maxWorkers,
    };
  }
  /** Counts a job that overran a synchronous call's timeout (pg_background 2.0's workers_timed_out). */
  recordTimeout(): void {
    this.#stats.timedOut++;
  }

  /**
   * The result once the job has ended or filled its queue — what one read can take
   * at once: its columns, how many notices are still to hand out (-1 while the job
   * runs: more may come), and — when the job has ended and its rows take at most
   * `inlineBytes` — the rows themselves (the result is then consumed).
   */
  async resultWhenReady(ref: HandleRef, { inlineBytes }: { inlineBytes: number }): Promise<ReadyResult> {
    const fields = await this.describe(ref);
    await this.awaitRows(ref);
    const tracked = this.#lookup(ref, { allowConsumed: false });
    const { job } = tracked;
    const undeliveredNotices = job.ended ? job.notices.length - tracked.noticesDelivered : -1;
    const inline = job.ended && fields.length > 0 && job.bufferedBytes <= inlineBytes;
    return { fields, undeliveredNotices, rows: inline ? await this.rawResult(ref) : undefined };
  }

  /**
   * The job's notices not handed out yet, once each: after a wait, or after its
   * result was read (kept a while for that: the reader asks right after the rows).
   */
  deliverNotices(pid: number): Notice[] {
    const pending = this.pendingNotices(pid);
    pending.handedOut();
    return pending.notices;
  }

  /** deliverNotices in two steps: the notices, and `handedOut` once they reached the reader (a reader that gives up leaves them for the next). */
  pendingNotices(pid: number): { notices: Notice[]; handedOut(): void } {
    const kept = this.#undeliveredNotices.get(pid);
    if (kept) return { notices: kept, handedOut: () => void (this.#undeliveredNotices.get(pid) === kept && this.#undeliveredNotices.delete(pid)) };
    const tracked = this.#jobs.get(pid);
    if (!tracked) return { notices: [], handedOut: () => undefined };
    const upTo = tracked.job.notices.length;
    return { notices: tracked.job.notices.slice(tracked.noticesDelivered, upTo), handedOut: () => void (tracked.noticesDelivered = Math.max(tracked.noticesDelivered, upTo)) };
  }

  /** The tracked job behind a handle (raises as the operations do for an unknown handle or a wrong cookie). */
  trackedJob(ref: HandleRef): TrackedJob {
    return this.#lookup(ref, { allowConsumed: true });
  }

  /** The tracked job behind a handle, or undefined where trackedJob raises. */
  tryTrackedJob(ref: HandleRef): TrackedJob | undefined {
    const tracked = this.#jobs.get(ref.pid);
    return tracked && (ref.cookie === undefined || cookiesEqual(tracked.cookie, ref.cookie)) ? tracked : undefined;
  }

  /** Who owns the job: the role it runs as, and the login of its workers; undefined for an unknown pid. */
  owner(pid: number): { roleOid: number | undefined; login: Login } | undefined {
    const tracked = this.#jobs.get(pid);
    return tracked ? { roleOid: tracked.context.roleOid, login: tracked.login } : undefined;
  }

  /**
   * Ends the session: its attached jobs run to completion and their results
   * are discarded. Resolves at once (use `drain` to wait for the jobs).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Nobody is left to read what a launch still waiting for a worker would start: it never runs.
    for (const tracked of this.#launching.values()) tracked?.abort.abort(errors.sessionClosed());
    for (const tracked of this.#jobs.values()) {
      tracked.job.discard();
      tracked.job.releaseMemory();
    }
    this.#jobs.clear();
    this.init.onClose?.();
  }

  async #launch(sql: string, options: LaunchOptions, resultsDisabled: boolean): Promise<Handle> {
    if (this.#closed) throw errors.sessionClosed();
    await this.core.ready();
    const plan = classifyStatements(sql);
    const queueSize = resolveQueueSize(options.queueSize, this.settings.defaultQueueSize);
    if (this.#jobs.size + this.#launching.size >= this.settings.maxWorkers) throw errors.tooManyWorkers(this.settings.maxWorkers);
    // A submitted job's rows are dropped as they come: it needs no queue.
    const queueBytes = resultsDisabled ? 0 : queueSize;
    const account = this.core.budgets.reserve(options.login ?? this.init.login, queueBytes);
    const job = new Job(sql, queueSize, resultsDisabled, { maxNoticeBytes: this.core.maxNoticeBytesPerJob, label: checkLabel(options.label) });
    job.chargeTo(account, queueBytes);
    let kept = false;
    this.#launching.set(job, undefined);
    try {
      const context = options.context ?? this.init.context ?? (await this.#capture());
      if (options.onNotice) job.onNotice = options.onNotice;
      const tracked: TrackedJob = {
        job,
        cookie: this.core.cookies.next(),
        context,
        login: options.login ?? this.init.login,
        abort: new AbortController(),
        settled: Promise.resolve(),
        timeoutMs: this.settings.workerTimeoutMs > 0 ? this.settings.workerTimeoutMs : context.statementTimeoutMs,
        noticesDelivered: 0,
      };
      this.#launching.set(job, tracked);
      if (this.#closed) throw errors.sessionClosed();
      const worker = await this.#acquire(tracked, options.signal);
      tracked.worker = worker;
      job.assignWorker(worker.pid);
      this.core.jobStarted(tracked);
      this.#consumed.delete(worker.pid);
      this.#jobs.set(worker.pid, tracked);
      kept = true;
      this.#stats.launched++;
      tracked.settled = executeJob(this.core, tracked, worker, plan).then(() => this.#count(tracked));
      this.logger.debug({ pid: job.pid, queueSize, resultsDisabled }, 'job launched');
      return { pid: job.pid, cookie: tracked.cookie };
    } finally {
      this.#launching.delete(job);
      if (!kept) job.releaseMemory();
    }
  }

  /** A worker for the launch, unless it is given up first (its signal, the session closing): then its SQL never runs. */
  async #acquire(tracked: TrackedJob, signal: AbortSignal | undefined): Promise<WorkerConnection> {
    const { abort } = tracked;
    const giveUp = () => void this.core.cancelJob(tracked, 0);
    if (signal?.aborted) giveUp();
    signal?.addEventListener('abort', giveUp, { once: true });
    try {
      const worker = await this.core.pool.acquire(tracked.login, new Set(this.#jobs.keys()), abort.signal).catch((err: unknown) => {
        throw abort.signal.aborted ? (abort.signal.reason as Error) : err;
      });
      if (abort.signal.aborted) {
        // Given up just as the worker came: it goes back unused.
        this.core.pool.release(worker, true);
        throw abort.signal.reason as Error;
      }
      return worker;
    } finally {
      signal?.removeEventListener('abort', giveUp);
    }
  }

  async #capture(): Promise<LaunchContext> {
    const launcher = this.init.launcher;
    if (!launcher) return { settings: {}, statementTimeoutMs: 0 };
    const context = await captureLaunchContext(launcher, (s) => parseTimeSetting(s, 'statement_timeout'), {
      customSettings: this.settings.customSettings,
      prepared: this.settings.preparedCapture,
    });
    return { ...context, settings: await this.changedSettings(context.settings) };
  }

  /** The settings among `settings` that differ from what a fresh worker of `login` starts with (the rest need no setup). */
  async changedSettings(settings: Record<string, string>, login: Login = this.init.login): Promise<Record<string, string>> {
    const names = Object.keys(settings);
    if (names.length === 0) return settings;
    const defaults = await this.core.loginDefaults(login, names);
    const changed: Record<string, string> = {};
    for (const name of names) if (defaults.get(name) !== settings[name]) changed[name] = settings[name]!;
    return changed;
  }

  #count(tracked: TrackedJob): void {
    const { job } = tracked;
    if (job.state === 'stopped') this.#stats.completed++;
    else if (job.state === 'canceled') this.#stats.canceled++;
    else this.#stats.failed++;
    if (job.startedAt && job.endedAt) {
      this.#stats.totalMs += job.endedAt.getTime() - job.startedAt.getTime();
      this.#stats.timed++;
    }
  }

  #lookup(ref: HandleRef, { allowConsumed }: { allowConsumed: boolean }): TrackedJob {
    const tracked = this.#jobs.get(ref.pid);
    if (!tracked) {
      const consumedCookie = this.#consumed.get(ref.pid);
      if (consumedCookie !== undefined && (ref.cookie === undefined || cookiesEqual(consumedCookie, ref.cookie))) {
        throw errors.consumed(ref.pid);
      }
      throw errors.notAttached(ref.pid);
    }
    if (ref.cookie !== undefined && !cookiesEqual(tracked.cookie, ref.cookie)) throw errors.cookieMismatch(ref.pid);
    if (!allowConsumed && tracked.job.consumed) throw errors.consumed(ref.pid);
    return tracked;
  }

  #forget(tracked: TrackedJob, consumed: boolean): void {
    // Read, detached or failed: nobody reads this job any more, whatever else holds it.
    tracked.job.releaseMemory();
    const pid = tracked.job.pid;
    if (this.#jobs.get(pid) !== tracked) return;
    this.#jobs.delete(pid);
    if (consumed) {
      this.#consumed.set(pid, tracked.cookie);
      if (this.#consumed.size > CONSUMED_MEMORY) this.#consumed.delete(this.#consumed.keys().next().value!);
      // Its reader asks for the notices right after the rows (deliverNotices).
      const left = tracked.job.notices.slice(tracked.noticesDelivered);
      if (left.length > 0) {
        this.#undeliveredNotices.set(pid, left);
        if (this.#undeliveredNotices.size > CONSUMED_MEMORY) this.#undeliveredNotices.delete(this.#undeliveredNotices.keys().next().value!);
      }
    } else {
      this.#undeliveredNotices.delete(pid);
    }
  }

  #failure(tracked: TrackedJob): PgbgError | undefined {
    return tracked.job.failure;
  }

  async #waitStep(tracked: TrackedJob): Promise<void> {
    const { job } = tracked;
    while (!job.ended) {
      if (job.stalled) {
        throw new PgbgError(
          SqlState.objectNotInPrerequisiteState,
          `background worker with PID ${job.pid} is waiting for its results to be read`,
          {
            detail: `Its unread results fill the queue of ${job.queueSize} bytes, so it cannot finish until they are read.`,
            hint: 'Read the result instead of waiting, or launch with a larger queue_size.',
          },
        );
      }
      await job.changed();
    }
  }
}

/** Labels are at most 64 bytes; an empty one is none. */
function checkLabel(label: string | undefined): string | undefined {
  if (label === undefined || label === '') return undefined;
  if (Buffer.byteLength(label) > LABEL_BYTES) throw new PgbgError(SqlState.stringDataRightTruncation, 'label too long', { detail: `A label is at most ${LABEL_BYTES} bytes.` });
  return label;
}
