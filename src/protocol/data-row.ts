/**
 * Rows as the wire carries them: a DataRow message ('D', int32 length, int16
 * field count, then per field an int32 length, -1 for NULL, and the text).
 * The engine buffers rows in this form, exactly as the worker sent them, so
 * the SQL API relays them without decoding and re-encoding; the library
 * decodes them when it hands them out.
 */

/** A buffered row: one complete DataRow message. */
export type DataRow = Buffer;

/**
 * Rows as the engine buffers them: one or more complete DataRow messages,
 * back to back, usually all the rows of one read of the worker's socket (so a
 * large result is relayed with one allocation per read, not one per row).
 */
export type RowRun = Buffer;

/** The DataRow messages of a run, as views on its bytes. */
export function splitRowRun(run: RowRun): DataRow[] {
  const rows: DataRow[] = [];
  let pos = 0;
  // Each message is a type byte plus its length (which counts itself): bounded by the run's size.
  while (pos < run.length) {
    const end = pos + 1 + run.readInt32BE(pos + 1);
    rows.push(run.subarray(pos, end));
    pos = end;
  }
  return rows;
}

const DATA_ROW = 0x44; // 'D'

export function encodeDataRow(values: readonly (string | null)[]): DataRow {
  let size = 7;
  for (const v of values) size += 4 + (v === null ? 0 : Buffer.byteLength(v));
  const buf = Buffer.allocUnsafe(size);
  buf[0] = DATA_ROW;
  buf.writeInt32BE(size - 1, 1);
  buf.writeInt16BE(values.length, 5);
  let pos = 7;
  for (const v of values) {
    if (v === null) {
      buf.writeInt32BE(-1, pos);
      pos += 4;
    } else {
      const n = buf.write(v, pos + 4, 'utf8');
      buf.writeInt32BE(n, pos);
      pos += 4 + n;
    }
  }
  return buf;
}

export function decodeDataRow(row: DataRow): (string | null)[] {
  const count = row.readInt16BE(5);
  const values = new Array<string | null>(count);
  let pos = 7;
  for (let i = 0; i < count; i++) {
    const n = row.readInt32BE(pos);
    pos += 4;
    if (n < 0) {
      values[i] = null;
    } else {
      values[i] = row.toString('utf8', pos, pos + n);
      pos += n;
    }
  }
  return values;
}
