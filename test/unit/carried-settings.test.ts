/** The library and the SQL API carry the same settings to their workers: the SQL is generated from the one list. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { apiScript } from '../../src/install/script.js';
import { CARRIED_SETTINGS } from '../../src/sql/carried-settings.js';

test('the SQL API reads the carried settings of the TypeScript list, names and values in the same order', async () => {
  const sql = await apiScript({ schema: 'public', dblink: 'public', version: '1.8' });
  const start = sql.indexOf('RETURN pg_catalog.json_strip_nulls(pg_catalog.json_object(');
  const body = sql.slice(start, sql.indexOf(']));', start));
  const names = [...body.slice(0, body.indexOf(']::pg_catalog.text[]')).matchAll(/'([^']+)'/g)].map((m) => m[1]);
  const values = [...body.matchAll(/current_setting\('([^']+)', true\)/g)].map((m) => m[1]);
  assert.ok(names.length > 50, `parsed ${names.length} names`);
  assert.deepEqual(names, [...CARRIED_SETTINGS]);
  assert.deepEqual(values, [...CARRIED_SETTINGS]);
  assert.equal(new Set(names).size, names.length, 'no duplicates');
  assert.ok(!sql.includes('@carried_'), 'every placeholder is filled');
});
