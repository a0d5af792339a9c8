/**
 * A worker: one PostgreSQL connection owned by the engine, logged in as the
 * launcher's user. It runs one job at a time with the simple Query protocol,
 * relaying the result's messages to a ResultSink and the notices to the job,
 * and can stop reading its socket so the backend waits (backpressure).
 */
import pg from 'pg';
import type { Logger } from 'pino';
import { encodeDataRow, type RowRun } from '../protocol/data-row.js';
import type { FieldInfo, Notice } from '../protocol/messages.js';
import { PROGRESS_SQLSTATE, parseProgress } from '../protocol/progress.js';
import { sendCancelRequest } from './cancel.js';
import { RelaySocket } from './relay-socket.js';
import { withDeadline } from './with-deadline.js';

/**
 * Where the messages of a job's query go, one by one, in the order the
 * backend sent them (the engine's ResultTracker decides which are the job's
 * result).
 */
export interface ResultSink {
  rowDescription(fields: FieldInfo[]): void;
  /** One DataRow message, or a run of `count` of them. */
  dataRow(run: RowRun, count?: number): void;
  commandComplete(tag: string): void;
  /** An empty query string. */
  emptyQuery(): void;
}

/** A job as its worker sees it (the engine's Job). */
export interface WorkerJob {
  /** Set by the worker while it runs the job: called when the job's buffer is full… */
  onFull: () => void;
  /** …and when it has room again. */
  onDrain: () => void;
  setProgress(pct: number, message: string | null): void;
  addNotice(notice: Notice): void;
}

export interface RunOutcome {
  /** The first error the server sent for this query, if any. */
  error?: pg.DatabaseError | Error;
  /** True when the connection died before ReadyForQuery. */
  lost: boolean;
  /** Transaction status from ReadyForQuery ('I' idle, 'T' in transaction, 'E' failed). */
  txStatus?: string;
}

interface ProtocolMessage {
  fields?: unknown[];
  text?: string;
}

/** node-postgres runs any object with `submit` as a query; this one feeds a job. */
class JobSubmission {
  #error: pg.DatabaseError | Error | undefined;
  #settled = false;

  constructor(
    private readonly text: string,
    private readonly tracker: ResultSink,
    private readonly settle: (outcome: RunOutcome) => void,
    private readonly txStatus: () => string | undefined,
    /** Given, the reset is sent in the same write as the job; called as it is. */
    private readonly pipelineReset?: () => void,
  ) {}

  submit(connection: { query(text: string): void; stream: { cork(): void; uncork(): void } }): void {
    if (!this.pipelineReset) {
      connection.query(this.text);
      return;
    }
    // One write, one wake-up of the backend, and no round trip for the reset: the
    // backend runs it right after the job (releasing the job's session locks then).
    connection.stream.cork();
    this.pipelineReset();
    connection.query(this.text);
    connection.query(RESET_SQL);
    connection.stream.uncork();
  }
  handleRowDescription(msg: { fields: FieldInfo[] }): void {
    this.tracker.rowDescription(
      msg.fields.map((f) => ({
        name: f.name,
        dataTypeID: f.dataTypeID,
        dataTypeSize: f.dataTypeSize,
        dataTypeModifier: f.dataTypeModifier,
        tableID: f.tableID,
        columnID: f.columnID,
      })),
    );
  }
  /** Only when the socket could not relay DataRows itself (TLS): re-encode what node-postgres decoded. */
  handleDataRow(msg: ProtocolMessage): void {
    this.tracker.dataRow(encodeDataRow(msg.fields as (string | null)[]));
  }
  handleCommandComplete(msg: ProtocolMessage): void {
    this.tracker.commandComplete(msg.text ?? '');
  }
  handleEmptyQuery(): void {
    this.tracker.emptyQuery();
  }
  handleError(err: pg.DatabaseError | Error): void {
    this.#error ??= err;
    // node-postgres drops the active query on an ErrorResponse, so ReadyForQuery never
    // reaches us: settle now. Its own queue holds the next query until ReadyForQuery,
    // and a failed simple query always leaves the session idle ('I').
    const fatal = !(err instanceof pg.DatabaseError) || err.severity === 'FATAL' || err.severity === 'PANIC';
    this.#finish(fatal ? { error: this.#error, lost: true } : { error: this.#error, lost: false, txStatus: 'I' });
  }
  handleReadyForQuery(): void {
    const txStatus = this.txStatus();
    this.#finish(this.#error ? { error: this.#error, lost: false, txStatus } : { lost: false, txStatus });
  }
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {
    // COPY is refused before a job runs; if one slips through (inside a function), fail it.
    this.#error ??= new Error('COPY protocol not allowed in pg_background');
  }
  handleCopyData(): void {}
  #finish(outcome: RunOutcome): void {
    if (this.#settled) return;
    this.#settled = true;
    this.settle(outcome);
  }
}

/** Between jobs: temp tables, settings, prepared statements, advisory locks, LISTEN, role. */
export const RESET_SQL = 'DISCARD ALL';

/** A reset takes a millisecond; one that has not answered in this long never will. */
const RESET_TIMEOUT_MS = 10_000;

export interface WorkerOptions {
  config: pg.ClientConfig;
  logger: Logger;
}

export class WorkerConnection {
  readonly createdAt = Date.now();
  jobsRun = 0;
  lastUsed = Date.now();
  /** The pool bucket this connection belongs to. */
  poolKey = '';
  /** A CancelRequest was sent: it may land late, so this connection is never reused. */
  cancelSent = false;
  #alive = true;
  #job: WorkerJob | undefined;
  #paused = false;
  #reset: Promise<boolean> | undefined;

  private constructor(
    private readonly client: pg.Client,
    private readonly logger: Logger,
    private readonly relay: RelaySocket | undefined,
  ) {
    client.on('notice', (msg) => this.#onNotice(msg));
    client.on('error', (err) => {
      this.#alive = false;
      this.logger.debug({ worker: this.pid, err: err.message }, 'worker connection error');
    });
    client.on('end', () => {
      this.#alive = false;
    });
  }

  static async open(options: WorkerOptions): Promise<WorkerConnection> {
    // Over TLS our socket only sees ciphertext, so DataRows then take node-postgres' path.
    const relay = options.config.ssl ? undefined : new RelaySocket();
    const client = new pg.Client({ ...options.config, application_name: 'pgbg worker', ...(relay ? { stream: () => relay } : {}) });
    await client.connect();
    return new WorkerConnection(client, options.logger, relay);
  }

  get pid(): number {
    return (this.client as unknown as { processID: number }).processID;
  }

  get alive(): boolean {
    return this.#alive;
  }

  /** Runs `text` for `job`; resolves at ReadyForQuery or when the connection is lost. */
  run(job: WorkerJob, text: string, tracker: ResultSink): Promise<RunOutcome> {
    this.#job = job;
    this.jobsRun++;
    job.onFull = () => this.#pause();
    job.onDrain = () => this.#resume();
    if (this.relay) this.relay.rowSink = (run, count) => tracker.dataRow(run, count);
    return new Promise<RunOutcome>((resolve) => {
      const relay = this.relay;
      const pipelineReset = relay ? () => (this.#reset = relay.pipelineReset()) : undefined;
      const submission = new JobSubmission(text, tracker, resolve, () => this.#txStatus(), pipelineReset);
      void this.client.query(submission as unknown as pg.QueryConfig);
    }).finally(() => {
      job.onFull = () => undefined;
      job.onDrain = () => undefined;
      if (this.relay) this.relay.rowSink = undefined;
      this.#resume();
      this.#job = undefined;
    });
  }

  /** Runs engine SQL (setup, reset) on this connection. */
  query(text: string): Promise<pg.QueryResult> {
    return this.client.query(text);
  }

  /**
   * Resets the session for the next job: awaits the reset that went out with
   * the last job, or runs one now. Resolves false when the reset failed.
   */
  async reset(): Promise<boolean> {
    const pipelined = this.#reset;
    this.#reset = undefined;
    const done = pipelined ?? this.client.query(RESET_SQL).then(() => true, () => false);
    // Bounded: a backend that swallowed the reset (say, a COPY the parser could not see,
    // which then read our Query as bad COPY data) must not hold its connection forever.
    return withDeadline(done, RESET_TIMEOUT_MS, false);
  }

  async cancel(): Promise<void> {
    this.cancelSent = true;
    const client = this.client as unknown as { processID: number; secretKey: number; host: string; port: number };
    await sendCancelRequest({ host: client.host, port: client.port }, client.processID, client.secretKey);
  }

  /** Closes the connection; the backend ends (anything uncommitted rolls back). */
  async close(): Promise<void> {
    if (!this.#alive) return;
    this.#alive = false;
    await this.client.end().catch(() => undefined);
  }

  #txStatus(): string | undefined {
    return (this.client as unknown as { _txStatus?: string })._txStatus;
  }

  #socket(): { pause(): void; resume(): void } {
    return (this.client as unknown as { connection: { stream: { pause(): void; resume(): void } } }).connection.stream;
  }

  #pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.#socket().pause();
    this.logger.debug({ worker: this.pid }, 'queue full: worker paused');
  }

  #resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#socket().resume();
  }

  #onNotice(msg: Partial<pg.DatabaseError>): void {
    const job = this.#job;
    if (!job) return;
    if (msg.code === PROGRESS_SQLSTATE) {
      const p = parseProgress(msg.detail);
      if (p) job.setProgress(p.pct, p.message);
      return;
    }
    job.addNotice({
      message: msg.message ?? '',
      severity: msg.severity,
      code: msg.code,
      detail: msg.detail,
      hint: msg.hint,
      position: msg.position,
      where: msg.where,
      schema: msg.schema,
      table: msg.table,
      column: msg.column,
      dataType: msg.dataType,
      constraint: msg.constraint,
    });
  }
}
