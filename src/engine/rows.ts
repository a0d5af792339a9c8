/** Text-format values to JavaScript values, with node-postgres' type parsers. */
import pg from 'pg';
import type { FieldInfo } from '../protocol/messages.js';
import type { RawRow } from './job.js';

/** A function that parses one raw row; the type parsers are looked up once per result. */
export function rowParser<R>(fields: FieldInfo[], mode: 'object' | 'array'): (row: RawRow) => R {
  const parsers = fields.map((f) => pg.types.getTypeParser(f.dataTypeID, 'text') as (v: string) => unknown);
  const names = fields.map((f) => f.name);
  if (mode === 'array') return (row) => row.map((v, i) => (v === null ? null : parsers[i]!(v))) as R;
  return (row) => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < names.length; i++) {
      const v = row[i];
      out[names[i]!] = v === null || v === undefined ? null : parsers[i]!(v);
    }
    return out as R;
  };
}
