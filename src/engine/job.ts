/**
 * One background job: its state machine, its bounded result buffer and the
 * things the launcher can observe (progress, notices, timings).
 *
 * The buffer holds raw text-format rows, bounded by the job's queue size. When
 * it is full the job asks its worker to stop reading the socket (`onFull`), so
 * the worker backend blocks on its own write and waits; it resumes
 * (`onDrain`) when the reader has taken half of it.
 */
import { errors, PgbgError, SqlState } from '../protocol/errors.js';
import { encodeDataRow, type RowRun } from '../protocol/data-row.js';
import type { FieldInfo, Notice } from '../protocol/messages.js';
import type { WorkerJob } from '../workers/worker.js';
import type { MemoryAccount } from './budget.js';

const EMPTY: RowRun = Buffer.alloc(0);

/** What callers see of a job's lifecycle (list's `state`): starting = launched, its SQL not yet sent. */
export type JobState = 'starting' | 'running' | 'stopped' | 'canceled' | 'error';

export type FinalState = 'stopped' | 'canceled' | 'error';

/**
 * The job's lifecycle, one phase at a time:
 *   starting → running → ended;  starting | running → canceling → ended;  starting → ended.
 * A canceling job still runs (callers see `running`) until its worker stops.
 */
export type JobPhase =
  | { readonly name: 'starting' }
  | { readonly name: 'running' }
  | { readonly name: 'canceling'; readonly byTimeout: boolean }
  | { readonly name: 'ended'; readonly state: FinalState; readonly error: PgbgError | undefined };

/** A row's values in text format (null for NULL): what the library hands out. */
export type RawRow = (string | null)[];

export interface Progress {
  /** 0..100, or -1 before any report. */
  pct: number;
  message: string | null;
  at: Date | null;
}

/** The column a row-less statement's command tag is returned in. */
export const COMMAND_TAG_FIELD: FieldInfo = {
  name: 'command',
  dataTypeID: 25,
  dataTypeSize: -1,
  dataTypeModifier: -1,
  tableID: 0,
  columnID: 0,
};

/** Most notices one job keeps, whatever their size. */
const MAX_KEPT_NOTICES = 1000;
/** Bytes of notices one job keeps by default (EngineOptions.maxNoticeBytesPerJob). */
export const NOTICE_BYTES = { default: 1024 * 1024, min: 0 } as const;

/** What a notice holds, as the engine counts it: the UTF-8 bytes of its text fields. */
export function noticeSize(notice: Notice): number {
  let n = 0;
  for (const v of Object.values(notice)) if (typeof v === 'string') n += Buffer.byteLength(v);
  return n;
}

export interface JobOptions {
  /** Bytes of notices kept; later ones are counted, not kept. @default NOTICE_BYTES.default */
  maxNoticeBytes?: number;
  /** A name for the job (pg_background 2.0's label), shown in lists and the worker's application_name. */
  label?: string | undefined;
}

interface Waiter {
  resolve(): void;
}

/** Job = one launched statement: its lifecycle, its buffered result, its notices and progress. */
export class Job implements WorkerJob {
  #phase: JobPhase = { name: 'starting' };
  /** The worker's backend pid, once the job has a worker (0 before). */
  pid = 0;
  readonly launchedAt = new Date();
  /** When it got its worker. */
  startedAt: Date | undefined;
  endedAt: Date | undefined;
  /** Result columns of the last statement, known once its RowDescription arrived. */
  fields: FieldInfo[] | undefined;
  commandTags: string[] = [];
  progress: Progress = { pct: -1, message: null, at: null };
  /**
   * The notices kept: the first ones, up to MAX_KEPT_NOTICES and
   * `maxNoticeBytes`; from the first that does not fit on, notices are only
   * counted, and one last WARNING (updated as they come) says how many.
   */
  readonly notices: Notice[] = [];
  /** Notices counted but not kept, and their bytes. */
  droppedNotices = 0;
  droppedNoticeBytes = 0;
  readonly maxNoticeBytes: number;
  readonly label: string | undefined;
  /** Rows relayed to the buffer so far (the reader may have taken some). */
  rowsReceived = 0;
  /** Their bytes (DataRow messages), counted as they arrive, read or not. */
  bytesReceived = 0;
  // Flags, not phases: whether anyone reads the rows is independent of how far the job has got.
  /** True once nobody will read the rows (submitted, detached, canceled, session closed). */
  discarding: boolean;
  /** True once a reader took the result (it may still be arriving). */
  consumed = false;

  /** Buffered runs of rows (see RowRun) and how many rows each holds. */
  #rows: RowRun[] = [];
  #counts: number[] = [];
  #head = 0;
  #bufferedBytes = 0;
  #paused = false;
  /** A cancel asked for the rows to go once the queue is full (so the backend can see the cancel). */
  #discardWhenFull = false;
  /** Rows a reader could have read were dropped by a cancel. */
  #droppedByCancel = false;
  #waiters: Waiter[] = [];
  #noticeBytes = 0;
  /** The last notice, standing for the dropped ones (once there are any). */
  #dropSummary: Notice | undefined;
  /** The login budget the job draws on (see chargeTo), and what it holds of it. */
  #account: MemoryAccount | undefined;
  #queueCharge = 0;
  #noticeCharge = 0;
  /** Nobody can read this job's notices any more (see releaseMemory). */
  #released = false;
  onFull: () => void = () => undefined;
  onDrain: () => void = () => undefined;
  onNotice: ((n: Notice) => void) | undefined;
  onFirstRow: (() => void) | undefined;

  constructor(
    readonly sql: string,
    readonly queueSize: number,
    readonly resultsDisabled: boolean,
    options: JobOptions = {},
  ) {
    this.discarding = resultsDisabled;
    this.maxNoticeBytes = options.maxNoticeBytes ?? NOTICE_BYTES.default;
    this.label = options.label;
  }

  get phase(): JobPhase {
    return this.#phase;
  }

  get state(): JobState {
    const p = this.#phase;
    return p.name === 'ended' ? p.state : p.name === 'canceling' ? 'running' : p.name;
  }

  get error(): PgbgError | undefined {
    return this.#phase.name === 'ended' ? this.#phase.error : undefined;
  }

  get ended(): boolean {
    return this.#phase.name === 'ended';
  }

  /** True once a cancel was asked for; the job may still be running. */
  get canceling(): boolean {
    return this.#phase.name === 'canceling';
  }

  /** True while the worker is held back because the buffer is full. */
  get stalled(): boolean {
    return this.#paused;
  }

  get bufferedBytes(): number {
    return this.#bufferedBytes;
  }

  /** The job got its worker: it stays `starting` until its SQL is sent (start). */
  assignWorker(pid: number): void {
    if (this.#phase.name !== 'starting' && this.#phase.name !== 'canceling') this.#illegal('get a worker');
    this.pid = pid;
    this.startedAt = new Date();
  }

  /** Its SQL is being written to the worker. */
  start(): void {
    if (this.#phase.name !== 'starting' || this.pid === 0) this.#illegal('start');
    this.#phase = { name: 'running' };
    this.#wake();
  }

  /**
   * The backend has begun the query the job's SQL is in (its first answer came): a cancel
   * request now reaches a running statement. One sent before is dropped if the backend had not
   * read the query yet.
   */
  begun = false;

  markBegun(): void {
    if (this.begun) return;
    this.begun = true;
    this.#wake();
  }

  /** A cancel was asked for (again, maybe: one because of the worker timeout marks it so). */
  requestCancel(byTimeout = false): void {
    const p = this.#phase;
    if (p.name === 'ended') this.#illegal('be canceled');
    this.#phase = { name: 'canceling', byTimeout: byTimeout || (p.name === 'canceling' && p.byTimeout) };
    this.#wake();
  }

  setFields(fields: FieldInfo[]): void {
    this.fields = fields;
    this.#wake();
  }

  /** Buffers `count` rows: one DataRow message, or a run of them. */
  pushRow(run: RowRun, count = 1): void {
    const first = this.rowsReceived === 0;
    this.rowsReceived += count;
    this.bytesReceived += run.length;
    if (first) this.onFirstRow?.();
    if (this.discarding) return;
    this.#rows.push(run);
    this.#counts.push(count);
    this.#bufferedBytes += run.length;
    if (!this.#paused && this.#bufferedBytes >= this.queueSize) {
      if (this.#discardWhenFull) {
        this.discard({ byCancel: true });
        return;
      }
      this.#paused = true;
      this.onFull();
    }
    this.#wake();
  }

  setCommandTags(tags: string[]): void {
    this.commandTags = tags;
    if (!this.fields) {
      this.fields = [COMMAND_TAG_FIELD];
      if (!this.discarding) {
        for (const tag of tags) {
          const row = encodeDataRow([tag]);
          this.#rows.push(row);
          this.#counts.push(1);
          // takeRows gives back what is taken: what is buffered must have been counted.
          this.#bufferedBytes += row.length;
        }
      }
    }
  }

  /**
   * Keeps a notice if it fits (see `notices`) and the login's budget has room
   * for it; `onNotice` hears of every one.
   */
  addNotice(notice: Notice): void {
    this.onNotice?.(notice);
    if (this.#released) return;
    const size = noticeSize(notice);
    const fits = !this.#dropSummary && this.notices.length < MAX_KEPT_NOTICES && this.#noticeBytes + size <= this.maxNoticeBytes;
    if (fits && (!this.#account || this.#account.take(size))) {
      this.notices.push(notice);
      this.#noticeBytes += size;
      if (this.#account) this.#noticeCharge += size;
    } else {
      this.#dropNotice(size);
    }
    this.#wake();
  }

  /**
   * Makes the job hold `queueBytes` of its login's budget (already taken from
   * `account`) until it is released; its notices are taken from it too.
   */
  chargeTo(account: MemoryAccount, queueBytes: number): void {
    this.#account = account;
    this.#queueCharge = queueBytes;
  }

  /** Nobody will read the job any more: give back all it holds of its login's budget, and keep no more notices. */
  releaseMemory(): void {
    this.#released = true;
    this.#account?.give(this.#queueCharge + this.#noticeCharge);
    this.#queueCharge = 0;
    this.#noticeCharge = 0;
  }

  /** Bytes of the notices kept. */
  get noticeBytes(): number {
    return this.#noticeBytes;
  }

  #dropNotice(size: number): void {
    this.droppedNotices++;
    this.droppedNoticeBytes += size;
    const n = this.droppedNotices;
    const summary: Notice = {
      severity: 'WARNING',
      code: '01000',
      message: `${n} more notice${n === 1 ? '' : 's'} of background worker with PID ${this.pid} ${n === 1 ? 'was' : 'were'} dropped`,
      detail: `A job keeps at most ${MAX_KEPT_NOTICES} notices and ${this.maxNoticeBytes} bytes of them, within its login's memory budget; the ${n} after these (${this.droppedNoticeBytes} bytes) were counted, not kept.`,
    };
    // One object, updated in place: whoever already holds the list sees the final count.
    if (this.#dropSummary) Object.assign(this.#dropSummary, summary);
    else this.notices.push((this.#dropSummary = summary));
  }

  setProgress(pct: number, message: string | null): void {
    this.progress = { pct: Math.min(100, Math.max(0, Math.trunc(pct))), message, at: new Date() };
  }

  /** The final transition: once only. */
  finish(state: FinalState, error?: PgbgError): void {
    if (this.#phase.name === 'ended') this.#illegal(`end as ${state}`);
    this.#phase = { name: 'ended', state, error };
    this.endedAt = new Date();
    this.#resumeIfPaused();
    this.#wake();
  }

  /**
   * For a cancel: a backend blocked writing rows into a full queue never sees the cancel, so the
   * rows go once the queue is full (now, if it is). Until then they stay: a cancel that comes
   * too late (the job commits) leaves its result whole.
   */
  discardOnceFull(): void {
    if (this.#paused) this.discard({ byCancel: true });
    else this.#discardWhenFull = true;
  }

  /** What reading the result raises once the rows are read: the job's error, or the loss of rows to a late cancel. */
  get failure(): PgbgError | undefined {
    if (this.state === 'error' || this.state === 'canceled') return this.error;
    if (this.state === 'stopped' && this.#droppedByCancel) return errors.rowsDroppedByCancel(this.pid);
    return undefined;
  }

  /** Drop buffered rows and every later one; the worker is never held back again. */
  discard({ byCancel = false }: { byCancel?: boolean } = {}): void {
    if (byCancel && !this.resultsDisabled) this.#droppedByCancel = true;
    this.discarding = true;
    // No queue to fill any more: its share of the budget goes back (the notices' stays until release).
    this.#account?.give(this.#queueCharge);
    this.#queueCharge = 0;
    this.#rows = [];
    this.#counts = [];
    this.#head = 0;
    this.#bufferedBytes = 0;
    this.#resumeIfPaused();
    this.#wake();
  }

  /**
   * Takes the runs buffered right now, about `max` rows (whole runs, at least
   * one); empty when none is buffered.
   */
  takeRows(max: number): RowRun[] {
    let end = this.#head;
    let rows = 0;
    while (end < this.#rows.length && (rows === 0 || rows + this.#counts[end]! <= max)) rows += this.#counts[end++]!;
    if (end === this.#head) return [];
    const taken = this.#rows.slice(this.#head, end);
    this.#consume(end, taken);
    return taken;
  }

  #consume(end: number, taken: RowRun[]): void {
    for (const run of taken) this.#bufferedBytes -= run.length;
    if (end === this.#rows.length) {
      this.#rows = [];
      this.#counts = [];
      this.#head = 0;
    } else {
      // Drop references to taken runs; compact once the consumed prefix dominates.
      for (let i = this.#head; i < end; i++) this.#rows[i] = EMPTY;
      this.#head = end;
      if (this.#head > 1024 && this.#head * 2 > this.#rows.length) {
        this.#rows = this.#rows.slice(this.#head);
        this.#counts = this.#counts.slice(this.#head);
        this.#head = 0;
      }
    }
    if (this.#paused && this.#bufferedBytes <= this.queueSize / 2) this.#resumeIfPaused();
  }

  /** Resolves when something changed: a row, a state transition, fields, a notice. */
  changed(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push({ resolve }));
  }

  /** Resolves once the job has ended. */
  async untilEnded(): Promise<void> {
    while (!this.ended) await this.changed();
  }

  #illegal(what: string): never {
    throw new PgbgError(SqlState.internalError, `pgbg internal error: a ${this.#phase.name} job cannot ${what}`);
  }

  #resumeIfPaused(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.onDrain();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.resolve();
  }
}

