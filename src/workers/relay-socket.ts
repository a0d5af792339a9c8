/**
 * The worker connection's socket. It frames the backend's messages as they
 * arrive and, while a job is running, hands each DataRow message (its bytes,
 * untouched) to the job instead of to node-postgres — whose parser would
 * decode every value into a JavaScript string, only for the SQL API to encode
 * it again. Every other message, and DataRows outside a job, go to
 * node-postgres in stream order.
 */
import net from 'node:net';

const DATA_ROW = 0x44; // 'D'
const HEADER = 5;

/** Splits a byte stream of backend messages into DataRow messages and the rest, in order. */
export class DataRowSplitter {
  readonly #header = Buffer.alloc(HEADER);
  #headerFill = 0;
  /** Body bytes still to come for the current message. */
  #remaining = 0;
  #row: Buffer | undefined;
  #rowFill = 0;
  #pass: Buffer[] = [];

  /**
   * Feeds one chunk. `pass` gets everything that is not a DataRow (possibly
   * part of a message); `row` gets each complete DataRow message.
   */
  feed(chunk: Buffer, pass: (bytes: Buffer) => void, row: (message: Buffer) => void): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.#headerFill < HEADER) {
        const n = Math.min(HEADER - this.#headerFill, chunk.length - pos);
        chunk.copy(this.#header, this.#headerFill, pos, pos + n);
        this.#headerFill += n;
        pos += n;
        if (this.#headerFill < HEADER) break;
        this.#remaining = this.#header.readInt32BE(1) - 4;
        if (this.#header[0] === DATA_ROW) {
          this.#row = Buffer.allocUnsafe(HEADER + this.#remaining);
          this.#header.copy(this.#row, 0);
          this.#rowFill = HEADER;
        } else {
          this.#pass.push(Buffer.from(this.#header));
        }
      }
      const n = Math.min(this.#remaining, chunk.length - pos);
      if (n > 0) {
        if (this.#row) {
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
          row(message);
        }
      }
    }
    this.#flush(pass);
  }

  #flush(pass: (bytes: Buffer) => void): void {
    if (this.#pass.length === 0) return;
    const bytes = this.#pass.length === 1 ? this.#pass[0]! : Buffer.concat(this.#pass);
    this.#pass = [];
    pass(bytes);
  }
}

/** A net.Socket whose DataRows go to `rowSink` while one is set. */
export class RelaySocket extends net.Socket {
  readonly #splitter = new DataRowSplitter();
  rowSink: ((message: Buffer) => void) | undefined;

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'data') return super.emit(event, ...args);
    const chunk = args[0] as Buffer;
    this.#splitter.feed(
      chunk,
      (bytes) => super.emit('data', bytes),
      (message) => (this.rowSink ? this.rowSink(message) : super.emit('data', message)),
    );
    return true;
  }
}
