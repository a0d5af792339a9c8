/**
 * Frames a byte stream of PostgreSQL backend messages and sorts them into
 * DataRows and the rest, without decoding a row.
 */
const DATA_ROW = 0x44; // 'D'
const HEADER = 5;

/** A backend message's header (type byte, then a length that counts itself), gathered across chunks. */
export class MessageHeader {
  readonly bytes = Buffer.alloc(HEADER);
  #fill = 0;

  get empty(): boolean {
    return this.#fill === 0;
  }

  get complete(): boolean {
    return this.#fill === HEADER;
  }

  get type(): number {
    return this.bytes[0]!;
  }

  get bodyLength(): number {
    return this.bytes.readInt32BE(1) - 4;
  }

  /** Takes what is missing of the header from `chunk` at `pos`; returns the position after it. */
  take(chunk: Buffer, pos: number): number {
    const n = Math.min(HEADER - this.#fill, chunk.length - pos);
    chunk.copy(this.bytes, this.#fill, pos, pos + n);
    this.#fill += n;
    return pos + n;
  }

  clear(): void {
    this.#fill = 0;
  }
}

/** Splits a byte stream of backend messages into DataRow messages and the rest, in order. */
export class DataRowSplitter {
  constructor(
    /** Makes the copy of a run of rows that `rows` gets (the chunk itself is not kept). */
    private readonly copyRun: (bytes: Buffer) => Buffer = (bytes) => Buffer.from(bytes),
  ) {}

  readonly #header = new MessageHeader();
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
      rows(this.copyRun(chunk.subarray(runStart, pos)), runRows);
      runStart = -1;
      runRows = 0;
    };
    while (pos < chunk.length) {
      if (this.#header.empty && chunk[pos] === DATA_ROW && pos + HEADER <= chunk.length) {
        const length = chunk.readInt32BE(pos + 1);
        const end = pos + 1 + length;
        // A DataRow is at least its length and a field count (6 bytes after the type).
        if (length >= 6 && end <= chunk.length) {
          if (runStart < 0) runStart = pos;
          runRows++;
          pos = end;
          continue;
        }
      }
      endRun();
      if (!this.#header.complete) {
        pos = this.#header.take(chunk, pos);
        if (!this.#header.complete) break;
        this.#remaining = this.#header.bodyLength;
        if (this.#header.type === DATA_ROW) {
          this.#row = Buffer.allocUnsafe(HEADER + this.#remaining);
          this.#header.bytes.copy(this.#row, 0);
          this.#rowFill = HEADER;
        } else {
          this.#pass.push(Buffer.from(this.#header.bytes));
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
        this.#header.clear();
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
