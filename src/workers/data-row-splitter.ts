/**
 * Frames a byte stream of PostgreSQL backend messages and sorts them into
 * DataRows and the rest, without decoding a row.
 */
const DATA_ROW = 0x44; // 'D'
const HEADER = 5;

/** What happens to one backend message: handed over as a DataRow, passed on, or dropped. */
export type Route = 'row' | 'pass' | 'drop';

export const defaultRoute = (type: number): Route => (type === DATA_ROW ? 'row' : 'pass');

/**
 * Splits a byte stream of backend messages into DataRow messages and the rest,
 * in order. `route` decides each message's fate from its type byte, once its
 * header has arrived (by default: DataRows are handed over, the rest passes).
 */
export class DataRowSplitter {
  constructor(
    private readonly route: (type: number) => Route = defaultRoute,
    /** Makes the copy of a run of rows that `rows` gets (the chunk itself is not kept). */
    private readonly copyRun: (bytes: Buffer) => Buffer = (bytes) => Buffer.from(bytes),
  ) {}

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
      rows(this.copyRun(chunk.subarray(runStart, pos)), runRows);
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
