/**
 * The engine: the worker pool, the cookie issuer and the sessions. One per
 * process is the usual shape; the SQL API server hosts one, and a Node app
 * can host one in-process.
 */
import pg from 'pg';
import { pino, type Logger } from 'pino';
import { CookieIssuer } from './cookie.js';
import type { EngineCore, TrackedJob } from './core.js';
import { Session } from './session.js';
import type { SessionSettings } from './types.js';
import { LoginBudgets, QUEUE_BYTES_PER_LOGIN } from './budget.js';
import { NOTICE_BYTES, type Job } from './job.js';
import type { JobObserver } from './observer.js';
import { jobSnapshot } from './snapshot.js';
import type { JobSnapshot } from './types.js';
import type { LaunchContext } from '../sql/launch-context.js';
import { errors } from '../protocol/errors.js';
import { loadClassifier } from '../sql/classify.js';
import { makeLogin, WorkerPool, type Login, type PoolOptions } from '../workers/pool.js';
import type { WorkerConnection } from '../workers/worker.js';
import { ControlConnections, type ControlOptions } from './control-connections.js';

export interface EngineOptions {
  /** Worker pool limits and policy. */
  pool?: PoolOptions;
  /** The control connections (one per login, outside the pool: cancels, lock checks): how many stay open, and for how long idle. */
  control?: ControlOptions;
  /** A pino logger; the debug level traces each job (launch, start, end, cancel, reset). @default silent */
  logger?: Logger;
  /** Told of each job's start and end (the server's journal). */
  observer?: JobObserver;
  /**
   * Bytes of notices one job keeps (their text fields, UTF-8); the notices
   * after them are counted, not kept, and one last WARNING says how many. @default 1048576 (1 MB)
   */
  maxNoticeBytesPerJob?: number;
  /**
   * The memory budget of one login (database, user, credentials) for queued
   * results: the queue sizes of its jobs not read (nor detached) yet, with
   * the notices they keep, over all its sessions. A launch beyond it fails
   * with 53200. @default 268435456 (256 MB)
   */
  maxQueueBytesPerLogin?: number;
}

/** What a shutdown did with the jobs that were running when it began. */
export interface ShutdownReport {
  /** Jobs that finished within the grace period. */
  finished: number;
  /** Jobs still running at the deadline, canceled. */
  canceled: JobSnapshot[];
}

export interface SessionOptions {
  /**
   * The launcher: a connected node-postgres client. Workers log in with its
   * credentials, and each launch captures its current role and session
   * settings. Give `connection` instead when there is no launcher session.
   */
  launcher?: pg.Client;
  /** Credentials for workers when there is no launcher client (or to override its). */
  connection?: pg.ClientConfig | string;
  /** Fixed identity and settings for every launch (instead of capturing from the launcher). */
  context?: LaunchContext;
  settings?: Partial<SessionSettings>;
}

/** How long a cooperative cancel waits for the worker before it terminates the backend (when its caller gave less). */
const COOPERATIVE_GRACE_MS = 1000;
/** How often a cancel request goes again while the job runs on (see #askToStop). */
const CANCEL_RESEND_MS = 50;
/** How long a cancel watches for the backend to begin the job's query (a statement run alone answers only at its end). */
const BEGIN_WAIT_MS = 200;

export class Engine implements EngineCore {
  readonly logger: Logger;
  readonly pool: WorkerPool;
  readonly cookies = new CookieIssuer();
  readonly observer: JobObserver | undefined;
  readonly maxNoticeBytesPerJob: number;
  readonly budgets: LoginBudgets;
  readonly #sessions = new Set<Session>();
  readonly #running = new Set<TrackedJob>();
  #jobsStarted = 0;
  readonly #controls: ControlConnections;
  #closing: Promise<ShutdownReport> | undefined;

  constructor(options: EngineOptions = {}) {
    this.logger = options.logger ?? pino({ level: 'silent' });
    this.pool = new WorkerPool(options.pool ?? {}, this.logger);
    this.#controls = new ControlConnections(options.control ?? {}, this.logger);
    this.observer = options.observer;
    this.budgets = new LoginBudgets(options.maxQueueBytesPerLogin ?? QUEUE_BYTES_PER_LOGIN.default);
    this.maxNoticeBytesPerJob = options.maxNoticeBytesPerJob ?? NOTICE_BYTES.default;
    if (!Number.isInteger(this.maxNoticeBytesPerJob) || this.maxNoticeBytesPerJob < NOTICE_BYTES.min) {
      throw new RangeError(`maxNoticeBytesPerJob must be a whole number, ${NOTICE_BYTES.min} or more`);
    }
  }

  /** Loads the SQL parser; launches await it on their own. */
  ready(): Promise<void> {
    return loadClassifier();
  }

  session(options: SessionOptions): Session {
    if (this.#closing) throw new Error('engine is closed');
    const connection = options.connection ?? (options.launcher ? launcherCredentials(options.launcher) : undefined);
    if (!connection) throw new TypeError('a session needs a launcher client or connection settings');
    const session: Session = new Session(
      this,
      {
        login: makeLogin(connection),
        launcher: options.launcher,
        context: options.context,
        settings: options.settings,
        onClose: () => this.#sessions.delete(session),
      },
      this.logger,
    );
    this.#sessions.add(session);
    return session;
  }

  /** Jobs whose workers are still running (attached or not). */
  get runningJobs(): number {
    return this.#running.size;
  }

  /** Jobs started since the engine was created. */
  get jobsStarted(): number {
    return this.#jobsStarted;
  }

  /** Snapshots of the jobs running now, every session's (operators' view: the server's HTTP API). */
  runningSnapshots(): JobSnapshot[] {
    return [...this.#running].map(jobSnapshot);
  }

  /**
   * Cancels the running job with this cookie, whichever session launched it (an
   * operator's cancel): asked to stop, terminated after `graceMs`. Resolves, once it
   * has ended, to its snapshot; undefined when no job with that cookie is running.
   */
  async cancelByCookie(cookie: bigint, graceMs: number): Promise<JobSnapshot | undefined> {
    const tracked = [...this.#running].find((t) => t.cookie === cookie);
    if (!tracked) return undefined;
    this.logger.info({ pid: tracked.job.pid, graceMs }, 'job canceled by an operator');
    await this.cancelJob(tracked, graceMs);
    return jobSnapshot(tracked);
  }

  /**
   * Stops the engine: sessions close (their jobs finish, results discarded),
   * running jobs get up to `graceMs` to finish and are then canceled, and the
   * pool closes. Idempotent: every call shares one shutdown.
   */
  close(options: { graceMs?: number } = {}): Promise<ShutdownReport> {
    this.#closing ??= this.#shutdown(options.graceMs ?? 30_000);
    return this.#closing;
  }

  /** Waits until no job is running (bounded by `timeoutMs`); true if none is left. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.#running.size > 0 && Date.now() < deadline) {
      await Promise.race([Promise.all([...this.#running].map((e) => e.settled)), sleep(Math.min(100, deadline - Date.now()))]);
    }
    return this.#running.size === 0;
  }

  // ---- used by sessions and job execution ----

  jobStarted(tracked: TrackedJob): void {
    this.#jobsStarted++;
    this.#running.add(tracked);
    this.observer?.started(jobSnapshot(tracked));
  }

  jobEnded(tracked: TrackedJob): void {
    this.#running.delete(tracked);
    this.observer?.ended(jobSnapshot(tracked));
  }

  async cancelJob(tracked: TrackedJob, graceMs: number, { cooperative = false }: { cooperative?: boolean } = {}): Promise<void> {
    const { job } = tracked;
    if (job.ended) return;
    if (cooperative && tracked.worker) return this.#cancelCooperatively(tracked, tracked.worker, graceMs);
    job.requestCancel();
    // The backend may be blocked writing rows nobody will read; let it go so it sees the cancel.
    job.discardOnceFull();
    const worker = tracked.worker;
    this.logger.debug({ pid: job.pid, graceMs }, 'job cancel');
    if (!worker) {
      // Still waiting for a worker: the launch fails, and a worker it gets meanwhile goes back unused.
      tracked.abort.abort(errors.launchCanceled());
      return;
    }
    if (graceMs > 0) {
      await this.#askToStop(tracked, worker, graceMs);
      if (job.ended) return;
    }
    worker.cancelSent = true;
    await this.#terminate(tracked);
    await Promise.race([tracked.settled, sleep(10_000)]);
  }

  /**
   * pg_background 2.0's cancel: the worker is asked to stop (its statement fails 57014) and the
   * caller waits up to `graceMs`; a worker still running when the grace ends (at least
   * COOPERATIVE_GRACE_MS) has its backend terminated, so a cancel always ends the job.
   */
  async #cancelCooperatively(tracked: TrackedJob, worker: WorkerConnection, graceMs: number): Promise<void> {
    const { job } = tracked;
    job.requestCancel();
    job.discardOnceFull();
    this.logger.debug({ pid: job.pid, graceMs }, 'job cancel (cooperative)');
    const escalation = this.#askToStop(tracked, worker, Math.max(graceMs, COOPERATIVE_GRACE_MS)).then(async () => {
      if (job.ended) return;
      worker.cancelSent = true;
      await this.#terminate(tracked);
    });
    escalation.catch((err: unknown) => this.logger.warn({ pid: job.pid, err: (err as Error).message }, 'could not end a canceled job'));
    if (graceMs > 0) await untilEndedOr(job, graceMs);
  }

  /**
   * Cancel requests until the job ends or `ms` pass. One that reaches the backend before it has
   * read the job's SQL is dropped by PostgreSQL (no statement to cancel yet), so it goes again
   * once the backend has begun, then every CANCEL_RESEND_MS. (Safe: a connection a cancel was
   * sent on is never reused.) A job that ends within the cancel's own trip after it begins can
   * still commit: the cancel came too late for it.
   */
  async #askToStop(tracked: TrackedJob, worker: WorkerConnection, ms: number): Promise<void> {
    const { job } = tracked;
    const deadline = Date.now() + ms;
    const ask = () => worker.cancel().catch((err: unknown) => this.logger.warn({ pid: job.pid, err: (err as Error).message }, 'cancel request failed'));
    // At once, and again as soon as the backend has begun the query (its first answer: the setup
    // statement's), since the first is dropped if it came before the backend read the query.
    const begunBefore = job.begun;
    await ask();
    if (!begunBefore) {
      const begunBy = Date.now() + Math.min(ms, BEGIN_WAIT_MS);
      while (!job.begun && !job.ended && Date.now() < begunBy) await untilChangedOr(job, begunBy - Date.now());
      if (job.begun && !job.ended) await ask();
    }
    while (!job.ended) {
      const left = deadline - Date.now();
      if (left <= 0) return;
      await untilEndedOr(job, Math.min(CANCEL_RESEND_MS, left));
      if (!job.ended) await ask();
    }
  }

  /** True when the worker waits for a lock held by `pid`. */
  async isBlockedBy(tracked: TrackedJob, pid: number): Promise<boolean> {
    try {
      const r = await this.#control(tracked.login, `SELECT ${Number(pid)} = ANY (pg_catalog.pg_blocking_pids(${Number(tracked.job.pid)})) AS blocked`);
      return r.rows[0]?.blocked === true;
    } catch {
      return false;
    }
  }

  /** True when the role with OID `roleOid` has the privileges of the role with OID `ownerOid` (pg_has_role … USAGE). */
  async hasPrivilegesOf(login: Login, roleOid: number, ownerOid: number): Promise<boolean> {
    const r = await this.#control(login, `SELECT pg_catalog.pg_has_role(${Number(roleOid)}::oid, ${Number(ownerOid)}::oid, 'USAGE') AS ok`);
    return r.rows[0]?.ok === true;
  }

  async #terminate(tracked: TrackedJob): Promise<void> {
    const pid = tracked.job.pid;
    this.logger.debug({ pid }, 'job terminate');
    try {
      // pg_terminate_backend sends SIGTERM: the backend rolls back and exits; the server does not restart.
      await this.#control(tracked.login, `SELECT pg_catalog.pg_terminate_backend(${Number(pid)})`);
    } catch (err) {
      this.logger.warn({ pid, err: (err as Error).message }, 'could not terminate worker; closing its connection');
      await tracked.worker?.close();
    }
  }

  /**
   * The settings a fresh worker of `login` starts with (database and role
   * defaults), for the names given; cached a minute. Lets a caller's captured
   * settings be cut to the ones that differ, so a job's setup stays short.
   */
  loginDefaults(login: Login, names: string[]): Promise<Map<string, string | null>> {
    return this.#controls.defaults(login, names);
  }

  /** Control connections open now (one per login used lately; see EngineOptions.control). */
  get controlConnections(): number {
    return this.#controls.size;
  }

  #control(login: Login, sql: string, params?: unknown[]): Promise<pg.QueryResult> {
    return this.#controls.query(login, sql, params);
  }

  async #shutdown(graceMs: number): Promise<ShutdownReport> {
    for (const s of [...this.#sessions]) s.close();
    const runningAtStart = this.#running.size;
    const canceled: JobSnapshot[] = [];
    if (!(await this.drain(graceMs))) {
      const left = [...this.#running];
      this.logger.warn({ jobs: left.map((e) => e.job.pid) }, 'jobs still running at shutdown: canceling them');
      await Promise.all(left.map((e) => this.cancelJob(e, 0).catch(() => undefined)));
      canceled.push(...left.map(jobSnapshot));
    }
    await this.pool.close();
    await this.#controls.close();
    return { finished: runningAtStart - canceled.length, canceled };
  }
}

/** The credentials of a connected node-postgres client (a password callback or .pgpass entry is resolved by then). */
function launcherCredentials(client: pg.Client): pg.ClientConfig {
  const config: pg.ClientConfig = { user: client.user, database: client.database, host: client.host, port: client.port };
  if (client.password !== undefined && client.password !== null) config.password = client.password;
  return config;
}

/** Resolves when the job has ended or `ms` have passed, whichever is first (the timer does not outlive it). */
function untilEndedOr(job: Job, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, Math.max(0, ms));
    void job.untilEnded().then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Resolves when the job changes (a row, its columns, its begin, its end) or `ms` have passed. */
function untilChangedOr(job: Job, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, Math.max(0, ms));
    void job.changed().then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
