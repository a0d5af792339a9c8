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
import { DataRowSplitter, defaultRoute, type Route } from './data-row-splitter.js';
import { RunSlabs } from './run-slabs.js';

/**
 * The one buffer every RelaySocket reads into. Safe to share: a read is handed
 * to its socket's callback, which copies out what it keeps, before the next
 * read (of any socket) can land in it.
 */
const READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024);
/** Rows a job must have streamed before its reads are paced and its runs go to slabs: small results never wait. */
const PACE_AFTER_BYTES = 64 * 1024;
/** A read shorter than this, while rows stream, is followed by a rest. */
const SHORT_READ_BYTES = READ_BUFFER.length / 2;
/**
 * How long the socket rests after a short read while a large result streams.
 * A backend sends 8 kB at a time; read as they come, a million rows meant
 * ~4,000 reads, each a wake-up of the server. Resting lets the sends gather in
 * the kernel and arrive in reads of up to 64 kB: the server's CPU for a large
 * result fell by 28% and 40% in two paired probes.
 */
const REST_MS = 1;
const READY_FOR_QUERY = 0x5a; // 'Z'
const ERROR_RESPONSE = 0x45; // 'E'

/**
 * A net.Socket whose DataRows go to `rowSink` while one is set, and which can
 * answer for a reset sent in the same write as a job (see pipelineReset).
 */
export class RelaySocket extends net.Socket {
  readonly #splitter = new DataRowSplitter(
    (type) => this.#route(type),
    (bytes) => (this.#streamedBytes >= PACE_AFTER_BYTES ? this.#slabs.copy(bytes) : Buffer.from(bytes)),
  );
  /** A large result's runs of rows are copied into slabs (see RunSlabs). */
  readonly #slabs = new RunSlabs();
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
    // The next job's rows do not share a slab with this one's.
    this.#slabs.release();
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
