/**
 * A worker: one PostgreSQL connection owned by the engine, logged in as the
 * launcher's user. node-postgres does the login (authentication) through a
 * LoginStream; from the first ReadyForQuery on, the worker alone reads and
 * writes its socket (WorkerProtocol). It runs one job at a time with the
 * simple Query protocol, relaying the result's messages to a ResultSink and
 * the notices to the job, and can stop reading its socket so the backend
 * waits (backpressure).
 */
import { once } from 'node:events';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import type { NoticeMessage } from 'pg-protocol/dist/messages.js';
import type { Logger } from 'pino';
import type { Notice } from '../protocol/messages.js';
import { PgbgError, SqlState } from '../protocol/errors.js';
import { PROGRESS_SQLSTATE, parseProgress } from '../protocol/progress.js';
import { sendCancelRequest, type ServerAddress } from './cancel.js';
import { LoginStream } from './login-stream.js';
import { WorkerProtocol, type QueryResult, type ResultSink, type RunOutcome } from './worker-protocol.js';
import { dial, splitTls, type Transport } from './worker-transport.js';
import { withDeadline } from './with-deadline.js';

export type { QueryResult, ResultSink, RunOutcome } from './worker-protocol.js';

/** A job as its worker sees it (the engine's Job). */
export interface WorkerJob {
  /** Set by the worker while it runs the job: called when the job's buffer is full… */
  onFull: () => void;
  /** …and when it has room again. */
  onDrain: () => void;
  setProgress(pct: number, message: string | null): void;
  addNotice(notice: Notice): void;
}

/** A reset takes a millisecond; one that has not answered in this long never will. */
const RESET_TIMEOUT_MS = 10_000;
/** How long close() waits for the server to close the connection after Terminate. */
const CLOSE_TIMEOUT_MS = 5_000;
/** How often a worker backend checks, while it runs a job, that the server is still connected (PostgreSQL 14+). */
const CONNECTION_CHECK_MS = 1000;

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
  #closing = false;
  #job: WorkerJob | undefined;
  #paused = false;

  private constructor(
    private readonly transport: Transport,
    private readonly protocol: WorkerProtocol,
    private readonly address: ServerAddress,
    private readonly logger: Logger,
  ) {
    transport.socket.on('error', (err) => this.logger.debug({ worker: this.pid, err: err.message }, 'worker connection error'));
  }

  static async open(options: WorkerOptions): Promise<WorkerConnection> {
    const { client: config, tls } = splitTls(options.config);
    let wired: { transport: Transport; protocol: WorkerProtocol } | undefined;
    const login: LoginStream = new LoginStream(async (target) => {
      const transport = await dial(target, tls);
      const { socket, relay } = transport;
      const protocol = new WorkerProtocol({ write: (bytes) => socket.write(bytes), destroy: () => socket.destroy() });
      relay.messageSink = (bytes) => {
        protocol.receive(bytes);
        login.deliver(bytes);
      };
      socket.on('error', (err) => protocol.closed(err));
      socket.on('close', () => {
        relay.stop();
        protocol.closed();
      });
      wired = { transport, protocol };
      return transport;
    });
    const client = new pg.Client({
      ...config, application_name: 'pgbg worker', stream: () => login,
      // A worker whose server died (killed, crashed) stops within a second instead of running its
      // job to the end with nobody to hear of it, holding its locks and maybe committing.
      options: [config.options, `-c client_connection_check_interval=${CONNECTION_CHECK_MS}`].filter(Boolean).join(' '),
    });
    // The client is done with once logged in; a close it hears about late must not throw.
    client.on('error', () => undefined);
    try {
      await client.connect();
      if (wired?.protocol.state !== 'idle') throw new PgbgError(SqlState.internalError, 'worker login ended without ReadyForQuery');
    } catch (err) {
      login.destroy();
      wired?.transport.socket.destroy();
      throw err;
    }
    const { transport, protocol } = wired;
    transport.relay.messageSink = (bytes) => protocol.receive(bytes);
    return new WorkerConnection(transport, protocol, { host: client.host, port: client.port }, options.logger);
  }

  get pid(): number {
    return this.protocol.pid;
  }

  get alive(): boolean {
    return !this.#closing && this.protocol.state !== 'broken';
  }

  /** Runs `text` for `job`; resolves at ReadyForQuery or when the connection is lost. */
  async run(job: WorkerJob, text: string, tracker: ResultSink): Promise<RunOutcome> {
    this.#job = job;
    this.jobsRun++;
    job.onFull = () => this.#pause();
    job.onDrain = () => this.#resume();
    this.transport.relay.rowSink = (run, count) => tracker.dataRow(run, count);
    try {
      return await this.protocol.run(text, tracker, (msg) => this.#onNotice(msg));
    } finally {
      job.onFull = () => undefined;
      job.onDrain = () => undefined;
      this.transport.relay.rowSink = undefined;
      this.#resume();
      this.#job = undefined;
    }
  }

  /** Runs engine SQL (setup, checks) on this connection. */
  query(text: string): Promise<QueryResult> {
    return this.protocol.query(text);
  }

  /**
   * Resets the session for the next job: awaits the reset that went out with
   * the last job, or runs one now. Resolves false when the reset failed.
   */
  reset(): Promise<boolean> {
    // Bounded: a backend that swallowed the reset must not hold its connection forever.
    return withDeadline(this.protocol.reset(), RESET_TIMEOUT_MS, false);
  }

  async cancel(): Promise<void> {
    this.cancelSent = true;
    await sendCancelRequest(this.address, this.protocol.pid, this.protocol.secretKey);
  }

  /** Closes the connection; the backend ends (anything uncommitted rolls back). */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    const { socket } = this.transport;
    if (socket.destroyed) return;
    const closed = once(socket, 'close').then(
      () => undefined,
      () => undefined,
    );
    socket.end(serialize.end());
    await withDeadline(closed, CLOSE_TIMEOUT_MS, undefined);
    socket.destroy();
  }

  #pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.transport.relay.hold();
    this.logger.debug({ worker: this.pid }, 'queue full: worker paused');
  }

  #resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.transport.relay.release();
  }

  #onNotice(msg: NoticeMessage): void {
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
