/** Text-format values to JavaScript values, with node-postgres' type parsers. */
import pg from 'pg';
import type { FieldInfo, RawRow } from './job.js';

export function parseRows<R>(fields: FieldInfo[], rows: RawRow[], mode: 'object' | 'array'): R[] {
  const parsers = fields.map((f) => pg.types.getTypeParser(f.dataTypeID, 'text') as (v: string) => unknown);
  return rows.map((row) => {
    if (mode === 'array') return row.map((v, i) => (v === null ? null : parsers[i]!(v))) as R;
    const out: Record<string, unknown> = {};
    for (let i = 0; i < fields.length; i++) {
      const v = row[i];
      out[fields[i]!.name] = v === null || v === undefined ? null : parsers[i]!(v);
    }
    return out as R;
  });
}
