/** The library and the SQL API carry the same settings to their workers. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { CARRIED_SETTINGS } from '../../src/sql/carried-settings.js';

test('the SQL API (0006) and the library carry the same list of settings', async () => {
  const sql = await readFile(path.resolve(import.meta.dirname, '../../src/install/sql/0006_fast_settings.sql'), 'utf8');
  const list = sql.slice(sql.indexOf('SELECT ARRAY['), sql.indexOf(']::pg_catalog.text[]'));
  const names = [...list.matchAll(/'([^']+)'/g)].map((m) => m[1]);
  assert.ok(names.length > 50, `parsed ${names.length} names`);
  assert.deepEqual(names, [...CARRIED_SETTINGS]);
  assert.equal(new Set(names).size, names.length, 'no duplicates');
  for (const n of ['search_path', 'TimeZone', 'DateStyle', 'work_mem']) assert.ok(names.includes(n), n);
});

test('the SQL API (0010) reads the values in the order of the names', async () => {
  const sql = await readFile(path.resolve(import.meta.dirname, '../../src/install/sql/0010_settings_one_expression.sql'), 'utf8');
  const values = sql.slice(sql.indexOf('json_object(pgbg_private.carried_settings(), ARRAY['));
  const names = [...values.matchAll(/current_setting\('([^']+)', true\)/g)].map((m) => m[1]);
  assert.deepEqual(names, [...CARRIED_SETTINGS]);
});
