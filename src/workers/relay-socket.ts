/**
 * The worker connection's socket. It frames the backend's messages as they
 * arrive and, while a job is running, hands the DataRow messages (their bytes,
 * untouched: consecutive rows as one slice of what was read) to the job
 * instead of to node-postgres — whose parser would decode every value into a
 * JavaScript string, only for the SQL API to encode it again. Every other
 * message, and DataRows outside a job, go to node-postgres in stream order.
 */
import net from 'node:net';

const DATA_ROW = 0x44; // 'D'
const HEADER = 5;

/** What happens to one backend message: handed over as a DataRow, passed on, or dropped. */
export type Route = 'row' | 'pass' | 'drop';

const defaultRoute = (type: number): Route => (type === DATA_ROW ? 'row' : 'pass');

/**
 * Splits a byte stream of backend messages into DataRow messages and the rest,
 * in order. `route` decides each message's fate from its type byte, once its
 * header has arrived (by default: DataRows are handed over, the rest passes).
 */
export class DataRowSplitter {
  constructor(private readonly route: (type: number) => Route = defaultRoute) {}

  readonly #header = Buffer.alloc(HEADER);
  #drop = false;
  #headerFill = 0;
  /** Body bytes still to come for the current message. */
  #remaining = 0;
  #row: Buffer | undefined;
  #rowFill = 0;
  #pass: Buffer[] = [];

  /**
   * Feeds one chunk. `pass` gets everything that is not a DataRow (possibly
   * part of a message); `rows` gets DataRow messages: runs of complete rows
   * that lie in this chunk as one view on the chunk (no copy), and a row cut
   * across chunks, once whole, as a copy.
   */
  feed(chunk: Buffer, pass: (bytes: Buffer) => void, rows: (run: Buffer, count: number) => void): void {
    let pos = 0;
    let runStart = -1;
    let runRows = 0;
    const endRun = () => {
      if (runRows === 0) return;
      // Bytes passed before the run leave first; none can arrive during it.
      this.#flush(pass);
      const view = chunk.subarray(runStart, pos);
      // A view keeps its whole read buffer alive: a small one is copied, so what a
      // job buffers never holds more than twice the bytes its queue counts.
      rows(view.length * 2 < view.buffer.byteLength ? Buffer.from(view) : view, runRows);
      runStart = -1;
      runRows = 0;
    };
    while (pos < chunk.length) {
      if (this.#headerFill === 0 && chunk[pos] === DATA_ROW && pos + HEADER <= chunk.length) {
        const length = chunk.readInt32BE(pos + 1);
        const end = pos + 1 + length;
        // A DataRow is at least its length and a field count (6 bytes after the type).
        if (length >= 6 && end <= chunk.length && this.route(DATA_ROW) === 'row') {
          if (runStart < 0) runStart = pos;
          runRows++;
          pos = end;
          continue;
        }
      }
      endRun();
      if (this.#headerFill < HEADER) {
        const n = Math.min(HEADER - this.#headerFill, chunk.length - pos);
        chunk.copy(this.#header, this.#headerFill, pos, pos + n);
        this.#headerFill += n;
        pos += n;
        if (this.#headerFill < HEADER) break;
        this.#remaining = this.#header.readInt32BE(1) - 4;
        const route = this.route(this.#header[0]!);
        this.#drop = route === 'drop';
        if (route === 'row') {
          this.#row = Buffer.allocUnsafe(HEADER + this.#remaining);
          this.#header.copy(this.#row, 0);
          this.#rowFill = HEADER;
        } else if (route === 'pass') {
          this.#pass.push(Buffer.from(this.#header));
        }
      }
      const n = Math.min(this.#remaining, chunk.length - pos);
      if (n > 0) {
        if (this.#drop) {
          // not ours to pass on
        } else if (this.#row) {
          chunk.copy(this.#row, this.#rowFill, pos, pos + n);
          this.#rowFill += n;
        } else {
          this.#pass.push(chunk.subarray(pos, pos + n));
        }
        pos += n;
        this.#remaining -= n;
      }
      if (this.#remaining === 0) {
        this.#headerFill = 0;
        if (this.#row) {
          const message = this.#row;
          this.#row = undefined;
          this.#flush(pass);
          rows(message, 1);
        }
      }
    }
    endRun();
    this.#flush(pass);
  }

  #flush(pass: (bytes: Buffer) => void): void {
    if (this.#pass.length === 0) return;
    const bytes = this.#pass.length === 1 ? this.#pass[0]! : Buffer.concat(this.#pass);
    this.#pass = [];
    pass(bytes);
  }
}

const READY_FOR_QUERY = 0x5a; // 'Z'
const ERROR_RESPONSE = 0x45; // 'E'

/**
 * A net.Socket whose DataRows go to `rowSink` while one is set, and which can
 * answer for a reset sent in the same write as a job (see pipelineReset).
 */
export class RelaySocket extends net.Socket {
  readonly #splitter = new DataRowSplitter((type) => this.#route(type));
  rowSink: ((run: Buffer, count: number) => void) | undefined;
  /** A reset follows the job in flight: the messages after its ReadyForQuery are the reset's. */
  #resetQueued: ((ok: boolean) => void) | undefined;
  /** The reset's messages are arriving: node-postgres must not see them. */
  #resetArriving: ((ok: boolean) => void) | undefined;
  #resetFailed = false;

  constructor() {
    super();
    this.once('close', () => this.#settleReset(false));
  }

  /**
   * Declares that the Query being written is followed, in the same write, by
   * a reset Query: the reset's replies (up to its ReadyForQuery) are kept
   * from node-postgres, which then sees one query and is idle after it.
   * Resolves true once the reset succeeded, false if it failed or the
   * connection ended first.
   */
  pipelineReset(): Promise<boolean> {
    this.#settleReset(false);
    return new Promise((resolve) => {
      this.#resetQueued = resolve;
    });
  }

  #route(type: number): Route {
    if (this.#resetArriving) {
      if (type === ERROR_RESPONSE) this.#resetFailed = true;
      if (type === READY_FOR_QUERY) this.#settleReset(!this.#resetFailed);
      return 'drop';
    }
    if (type === READY_FOR_QUERY && this.#resetQueued) {
      // The job's own ReadyForQuery passes; what follows is the reset's.
      this.#resetArriving = this.#resetQueued;
      this.#resetQueued = undefined;
      this.#resetFailed = false;
    }
    return defaultRoute(type);
  }

  #settleReset(ok: boolean): void {
    const settle = this.#resetArriving ?? this.#resetQueued;
    this.#resetArriving = undefined;
    this.#resetQueued = undefined;
    settle?.(ok);
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'data') return super.emit(event, ...args);
    const chunk = args[0] as Buffer;
    this.#splitter.feed(
      chunk,
      (bytes) => super.emit('data', bytes),
      (run, count) => (this.rowSink ? this.rowSink(run, count) : super.emit('data', run)),
    );
    return true;
  }
}
