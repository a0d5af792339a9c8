/**
 * The worker connection's side of the wire protocol once it is logged in: a
 * state machine over the backend's messages (all but a job's DataRows, which
 * the RowRelay hands to the job untouched).
 *
 *   connecting ─▶ idle ─▶ running ─▶ resetting ─▶ idle
 *                   │         └────────────────────▶ idle   (no reset queued)
 *                   └─▶ resetting (a reset on its own)
 *   any state ─▶ broken (connection lost, FATAL, COPY, protocol violation; final)
 *
 * A job's Query goes out with the reset's Query in the same write: one
 * wake-up of the backend and no round trip for the reset. The job ends at its
 * own ReadyForQuery; the messages up to the next one are the reset's.
 */
import { serialize } from 'pg-protocol';
import {
  BackendKeyDataMessage,
  CommandCompleteMessage,
  CopyResponse,
  DatabaseError,
  DataRowMessage,
  NoticeMessage,
  ReadyForQueryMessage,
  RowDescriptionMessage,
  type BackendMessage,
} from 'pg-protocol/dist/messages.js';
import { Parser } from 'pg-protocol/dist/parser.js';
import { encodeDataRow, type RowRun } from '../protocol/data-row.js';
import { errors, PgbgError, SqlState } from '../protocol/errors.js';
import type { FieldInfo } from '../protocol/messages.js';

export type ConnectionState = 'connecting' | 'idle' | 'running' | 'resetting' | 'broken';

const TRANSITIONS: Readonly<Record<ConnectionState, readonly ConnectionState[]>> = {
  connecting: ['idle', 'broken'],
  idle: ['running', 'resetting', 'broken'],
  running: ['idle', 'resetting', 'broken'],
  resetting: ['idle', 'broken'],
  broken: [],
};

/** Between jobs: temp tables, settings, prepared statements, advisory locks, LISTEN, role. */
export const RESET_SQL = 'DISCARD ALL';
const RESET_QUERY = serialize.query(RESET_SQL);

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

export interface RunOutcome {
  /** The first error the server sent for this query, if any (or why the connection was given up). */
  error?: DatabaseError | Error;
  /** True when the connection died (or was given up) before ReadyForQuery. */
  lost: boolean;
  /** Transaction status from ReadyForQuery ('I' idle, 'T' in transaction, 'E' failed). */
  txStatus?: string;
}

/** Rows of engine SQL, by column name, as text. */
export interface QueryResult {
  rows: Record<string, string | null>[];
}

/** What the Query in flight does with its replies. */
interface Replies {
  rowDescription(msg: RowDescriptionMessage): void;
  dataRow(msg: DataRowMessage): void;
  commandComplete(msg: CommandCompleteMessage): void;
  emptyQuery(): void;
  notice(msg: NoticeMessage): void;
  settle(outcome: RunOutcome): void;
}

interface Command {
  readonly replies: Replies;
  error?: DatabaseError | Error;
}

interface PendingReset {
  failed: boolean;
  settle(ok: boolean): void;
}

export interface ProtocolIo {
  write(bytes: Buffer): void;
  /** Gives the connection up: the socket is destroyed. */
  destroy(): void;
}

export class WorkerProtocol {
  #state: ConnectionState = 'connecting';
  readonly #parser = new Parser();
  #pid = 0;
  #secretKey = 0;
  #command: Command | undefined;
  /** The reset queued behind the job in flight, or whose replies are arriving. */
  #reset: PendingReset | undefined;
  /** What reset() hands out: the result of the reset that went out with the last job. */
  #resetResult: Promise<boolean> | undefined;

  constructor(private readonly io: ProtocolIo) {}

  get state(): ConnectionState {
    return this.#state;
  }

  /** From the login's BackendKeyData. */
  get pid(): number {
    return this.#pid;
  }

  get secretKey(): number {
    return this.#secretKey;
  }

  /** Bytes from the server (any framing; not retained after the call unless a message is incomplete). */
  receive(bytes: Buffer): void {
    this.#parser.parse(bytes, (msg) => this.#onMessage(msg));
  }

  /** The socket closed or failed. */
  closed(reason?: Error): void {
    this.#break(reason);
  }

  /** Gives the connection up (closing it, a reset that never answered). */
  abandon(): void {
    this.#break();
  }

  /** Runs a job's Query, with the reset behind it; resolves at its ReadyForQuery or when the connection is lost. */
  run(text: string, sink: ResultSink, onNotice: (msg: NoticeMessage) => void): Promise<RunOutcome> {
    this.#to('running');
    return new Promise<RunOutcome>((settle) => {
      this.#command = {
        replies: {
          rowDescription: (msg) => sink.rowDescription(msg.fields.map(fieldInfo)),
          // The RowRelay hands a job's rows over raw; one reaches the parser only without it.
          dataRow: (msg) => sink.dataRow(encodeDataRow(msg.fields)),
          commandComplete: (msg) => sink.commandComplete(msg.text),
          emptyQuery: () => sink.emptyQuery(),
          notice: onNotice,
          settle,
        },
      };
      this.#resetResult = new Promise<boolean>((resolve) => {
        this.#reset = { failed: false, settle: resolve };
      });
      this.io.write(Buffer.concat([serialize.query(text), RESET_QUERY]));
    });
  }

  /** Runs engine SQL on its own (simple Query); rejects with the server's first error. */
  query(text: string): Promise<QueryResult> {
    this.#to('running');
    return new Promise<QueryResult>((resolve, reject) => {
      let names: string[] = [];
      const rows: Record<string, string | null>[] = [];
      this.#command = {
        replies: {
          rowDescription: (msg) => (names = msg.fields.map((f) => f.name)),
          dataRow: (msg) => rows.push(Object.fromEntries(names.map((n, i) => [n, msg.fields[i] ?? null]))),
          commandComplete: () => undefined,
          emptyQuery: () => undefined,
          notice: () => undefined,
          settle: (outcome) => (outcome.error ? reject(outcome.error) : resolve({ rows })),
        },
      };
      this.io.write(serialize.query(text));
    });
  }

  /** The reset that went out with the last job, or one now; false when it failed. */
  reset(): Promise<boolean> {
    const pipelined = this.#resetResult;
    this.#resetResult = undefined;
    if (pipelined) return pipelined;
    if (this.#state !== 'idle') return Promise.resolve(false);
    this.#to('resetting');
    return new Promise<boolean>((resolve) => {
      this.#reset = { failed: false, settle: resolve };
      this.io.write(RESET_QUERY);
    });
  }

  #onMessage(msg: BackendMessage): void {
    // The rest of a read that broke the connection is not ours to act on.
    if (this.#state === 'broken') return;
    if (msg instanceof ReadyForQueryMessage) return this.#readyForQuery(msg.status);
    const replies = this.#state === 'running' ? this.#command?.replies : undefined;
    if (msg instanceof DataRowMessage) return this.#expect(replies)?.dataRow(msg);
    if (msg instanceof CommandCompleteMessage) return this.#state === 'resetting' ? undefined : this.#expect(replies)?.commandComplete(msg);
    if (msg instanceof RowDescriptionMessage) return this.#expect(replies)?.rowDescription(msg);
    if (msg instanceof NoticeMessage) return replies?.notice(msg);
    if (msg instanceof DatabaseError) return this.#error(msg);
    if (msg instanceof BackendKeyDataMessage) {
      this.#pid = msg.processID;
      this.#secretKey = msg.secretKey;
      return;
    }
    if (msg instanceof CopyResponse) {
      // COPY is refused before a job runs; one that slips through would wait on (or flood) a
      // sub-protocol the result queue cannot carry: the job fails and the connection goes.
      if (this.#command) this.#command.error ??= errors.copy();
      return this.#break();
    }
    if (msg.name === 'emptyQuery') return this.#expect(replies)?.emptyQuery();
    // Asynchronous messages, and the login's (node-postgres answers those).
    if (msg.name === 'parameterStatus' || msg.name === 'notification' || this.#state === 'connecting') return;
    this.#break(new PgbgError(SqlState.internalError, `unexpected ${msg.name} message from a worker connection`));
  }

  #readyForQuery(status: string): void {
    switch (this.#state) {
      case 'connecting':
        return this.#to('idle');
      case 'running': {
        const command = this.#command!;
        this.#command = undefined;
        this.#to(this.#reset ? 'resetting' : 'idle');
        return command.replies.settle(command.error ? { error: command.error, lost: false, txStatus: status } : { lost: false, txStatus: status });
      }
      case 'resetting': {
        const reset = this.#reset!;
        this.#reset = undefined;
        this.#to('idle');
        return reset.settle(!reset.failed);
      }
      default:
        return this.#break(new PgbgError(SqlState.internalError, `ReadyForQuery while ${this.#state}`));
    }
  }

  #error(err: DatabaseError): void {
    // The parser reports a message it does not know as an error without a severity.
    const fatal = err.severity === undefined || err.severity === 'FATAL' || err.severity === 'PANIC';
    if (this.#state === 'running') this.#command!.error ??= err;
    else if (this.#state === 'resetting') this.#reset!.failed = true;
    // A login error is node-postgres' to report.
    if (fatal && this.#state !== 'connecting') this.#break(err);
  }

  /** The replies of the Query in flight, or a protocol violation. */
  #expect(replies: Replies | undefined): Replies | undefined {
    if (!replies) this.#break(new PgbgError(SqlState.internalError, `result message while ${this.#state}`));
    return replies;
  }

  #break(reason?: Error): void {
    if (this.#state === 'broken') return;
    this.#to('broken');
    const command = this.#command;
    const reset = this.#reset;
    this.#command = undefined;
    this.#reset = undefined;
    this.io.destroy();
    command?.replies.settle({ error: command.error ?? reason ?? connectionLost(), lost: true });
    reset?.settle(false);
  }

  #to(next: ConnectionState): void {
    if (!TRANSITIONS[this.#state].includes(next)) {
      throw new PgbgError(SqlState.internalError, `worker connection: no transition from ${this.#state} to ${next}`);
    }
    this.#state = next;
  }
}

function connectionLost(): PgbgError {
  return new PgbgError(SqlState.connectionFailure, 'Connection terminated unexpectedly');
}

function fieldInfo(f: FieldInfo): FieldInfo {
  return {
    name: f.name,
    dataTypeID: f.dataTypeID,
    dataTypeSize: f.dataTypeSize,
    dataTypeModifier: f.dataTypeModifier,
    tableID: f.tableID,
    columnID: f.columnID,
  };
}
