/**
 * The worker connection's socket. It frames the backend's messages as they
 * arrive and, while a job is running, hands the DataRow messages (their bytes,
 * untouched: consecutive rows as one buffer) to the job instead of to
 * node-postgres — whose parser would decode every value into a JavaScript
 * string, only for the SQL API to encode it again. Every other message, and
 * DataRows outside a job, go to node-postgres in stream order.
 *
 * Every worker socket reads into one process-wide buffer and the splitter
 * copies out exactly the bytes it hands on. Node's default allocates 64 kB per
 * read and shrinks it in place; a result kept as views on those reads holds
 * up to twice its bytes, and the shrunk blocks leave holes in the C heap that
 * outlive the burst (see README, "Memory after a burst").
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
   * part of a message); `rows` gets DataRow messages: the complete rows that
   * lie back to back in this chunk as one run, and a row cut across chunks,
   * once whole, on its own. The chunk is never retained: what the callbacks
   * get is the splitter's own memory, so the caller may reuse the chunk as
   * soon as feed returns.
   */
  feed(chunk: Buffer, pass: (bytes: Buffer) => void, rows: (run: Buffer, count: number) => void): void {
    let pos = 0;
    let runStart = -1;
    let runRows = 0;
    const endRun = () => {
      if (runRows === 0) return;
      // Bytes passed before the run leave first; none can arrive during it.
      this.#flush(pass);
      rows(Buffer.from(chunk.subarray(runStart, pos)), runRows);
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
    // A copy, also of a single part: the parts may be views on the chunk.
    const bytes = Buffer.concat(this.#pass);
    this.#pass = [];
    pass(bytes);
  }
}

/**
 * The one buffer every RelaySocket reads into. Safe to share: a read is handed
 * to its socket's callback, which copies out what it keeps, before the next
 * read (of any socket) can land in it.
 */
const READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024);
/** Rows a job must have streamed before its reads are paced: small results never wait. */
const PACE_AFTER_BYTES = 64 * 1024;
/** A read shorter than this, while rows stream, is followed by a rest. */
const SHORT_READ_BYTES = READ_BUFFER.length / 2;
/**
 * How long the socket rests after a short read while a large result streams.
 * A backend sends 8 kB at a time; read as they come, a million rows meant
 * ~4,000 reads, each a wake-up of the server. Resting lets the sends gather in
 * the kernel and arrive in reads of up to 64 kB: the server's CPU for a large
 * result fell by a quarter to a third in paired runs.
 */
const REST_MS = 1;
const READY_FOR_QUERY = 0x5a; // 'Z'
const ERROR_RESPONSE = 0x45; // 'E'

/**
 * A net.Socket whose DataRows go to `rowSink` while one is set, and which can
 * answer for a reset sent in the same write as a job (see pipelineReset).
 */
export class RelaySocket extends net.Socket {
  readonly #splitter = new DataRowSplitter((type) => this.#route(type));
  #rowSink: ((run: Buffer, count: number) => void) | undefined;
  /** Bytes read since the row sink was set. */
  #streamedBytes = 0;
  /** Paused by our owner (a full job queue): only resume() ends that. */
  #held = false;
  /** Resting after a short read (see REST_MS). */
  #rest: NodeJS.Timeout | undefined;
  /** A reset follows the job in flight: the messages after its ReadyForQuery are the reset's. */
  #resetQueued: ((ok: boolean) => void) | undefined;
  /** The reset's messages are arriving: node-postgres must not see them. */
  #resetArriving: ((ok: boolean) => void) | undefined;
  #resetFailed = false;

  constructor() {
    // onread is a documented net.Socket option that @types/node declares only for net.connect.
    // The callback is made before `this` exists; it finds the socket through `reader`.
    const reader: { socket?: RelaySocket } = {};
    const onread = { buffer: READ_BUFFER, callback: (length: number, buffer: Uint8Array) => reader.socket!.receive(buffer.subarray(0, length)) };
    super({ onread } as net.SocketConstructorOpts);
    reader.socket = this;
    this.once('close', () => {
      clearTimeout(this.#rest);
      this.#settleReset(false);
    });
  }

  get rowSink(): ((run: Buffer, count: number) => void) | undefined {
    return this.#rowSink;
  }

  /** Where a job's DataRows go; set for each job, unset between jobs. */
  set rowSink(sink: ((run: Buffer, count: number) => void) | undefined) {
    this.#rowSink = sink;
    this.#streamedBytes = 0;
  }

  override pause(): this {
    this.#held = true;
    return super.pause();
  }

  override resume(): this {
    this.#held = false;
    if (this.#rest === undefined) super.resume();
    return this;
  }

  /** After a short read of a large result: stop reading for REST_MS, unless held meanwhile. */
  #pace(readBytes: number): void {
    if (!this.#rowSink) return;
    this.#streamedBytes += readBytes;
    if (this.#rest !== undefined || this.#streamedBytes < PACE_AFTER_BYTES || readBytes >= SHORT_READ_BYTES) return;
    super.pause();
    this.#rest = setTimeout(() => {
      this.#rest = undefined;
      if (!this.#held && !this.destroyed) super.resume();
    }, REST_MS);
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

  /** What the socket does with each read: routes its messages (the bytes are not retained). */
  receive(bytes: Uint8Array): void {
    const chunk = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#splitter.feed(
      chunk,
      (passed) => this.emit('data', passed),
      (run, count) => (this.#rowSink ? this.#rowSink(run, count) : this.emit('data', run)),
    );
    this.#pace(chunk.length);
  }
}
