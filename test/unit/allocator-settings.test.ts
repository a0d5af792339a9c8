/**
 * The allocator settings the `pgbg` command sets for the server (bin/pgbg) and
 * the ones the embedded PostgreSQL is started without are the same list.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ALLOCATOR_SETTINGS, withoutAllocatorSettings } from '../../src/embedded/postgres.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

test('the settings bin/pgbg exports are the ones the embedded PostgreSQL does not get', async () => {
  const launcher = await readFile(path.join(ROOT, 'bin/pgbg'), 'utf8');
  const exported = /^export (.+)$/m.exec(launcher)?.[1]?.split(/\s+/) ?? [];
  assert.deepEqual([...exported].sort(), [...ALLOCATOR_SETTINGS].sort());
});

test('withoutAllocatorSettings drops exactly those and leaves the rest', () => {
  const env = {
    PATH: '/usr/bin', LC_ALL: 'C', MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '65536', MALLOC_TRIM_THRESHOLD_: '131072',
    MALLOC_CONF: 'background_thread:true', MALLOC_CHECK_: '3',
  };
  assert.deepEqual(withoutAllocatorSettings(env), { PATH: '/usr/bin', LC_ALL: 'C', MALLOC_CHECK_: '3' });
  assert.equal(env.MALLOC_ARENA_MAX, '2', 'the given environment is left as it was');
});

test('withoutAllocatorSettings takes out only the library bin/pgbg preloaded', () => {
  const jemalloc = '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2';
  assert.deepEqual(withoutAllocatorSettings({ LD_PRELOAD: jemalloc, PGBG_PRELOADED: jemalloc }), {});
  assert.deepEqual(withoutAllocatorSettings({ LD_PRELOAD: `${jemalloc} /opt/trace.so`, PGBG_PRELOADED: jemalloc }), { LD_PRELOAD: '/opt/trace.so' });
  assert.deepEqual(withoutAllocatorSettings({ LD_PRELOAD: `/opt/trace.so:${jemalloc}`, PGBG_PRELOADED: jemalloc }), { LD_PRELOAD: '/opt/trace.so' });
  // A preload the user chose, without bin/pgbg's mark, stays.
  assert.deepEqual(withoutAllocatorSettings({ LD_PRELOAD: jemalloc }), { LD_PRELOAD: jemalloc });
});
