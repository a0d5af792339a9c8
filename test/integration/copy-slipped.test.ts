/**
 * A COPY the classifier cannot see: with standard_conforming_strings off in the
 * database, a worker reads `'a\''` as one quoted quote and runs the COPY after it,
 * where PostgreSQL's parser (as the classifier runs it, the setting on) saw one
 * string literal. The worker still refuses the copy sub-protocol: the caller sees
 * pg_background's 0A000, and the connection, left mid-COPY, is never used again.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createTestDatabase, withClient } from '../helpers/db.js';
import { openFixture } from '../helpers/engine.js';
import { startTestApi } from '../helpers/sql-api.js';

const HIDDEN_COPIES = ["SELECT 'a\\'' ; COPY t TO STDOUT; --'", "SELECT 'a\\'' ; COPY t FROM STDIN; --'"];
const COPY_REFUSED = { code: '0A000', message: 'COPY protocol not allowed in pg_background' };

/** Whether a backend is still connected. */
async function backendAlive(url: string, pid: number): Promise<boolean> {
  return withClient(url, async (c) => (await c.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rows.length > 0);
}

/** Until the backend is gone (bounded); false if it is still there. */
async function backendGone(url: string, pid: number): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (!(await backendAlive(url, pid))) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

describe('COPY that slips past the classifier', () => {
  test('the library: 0A000, and the worker connection is closed, never reused', async () => {
    const db = await createTestDatabase();
    await withClient(db.url, (c) => c.query(`CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2); ALTER DATABASE ${db.name} SET standard_conforming_strings = off`));
    const fx = await openFixture(db.url, { pool: { maxConnections: 1 } });
    try {
      for (const sql of HIDDEN_COPIES) {
        const h = await fx.session.launch(sql);
        await assert.rejects(fx.session.result(h), COPY_REFUSED, sql);
        assert.ok(await backendGone(db.url, h.pid), `the worker ${h.pid} left mid-COPY is closed`);
        const next = await fx.session.launch('SELECT 1 AS one');
        assert.notEqual(next.pid, h.pid, 'the next job runs on another connection');
        assert.deepEqual((await fx.session.result(next)).rows, [{ one: 1 }]);
      }
    } finally {
      await fx.close();
      await db.drop();
    }
  });

  test('the SQL API: the caller sees 0A000', async () => {
    const db = await createTestDatabase();
    await withClient(db.url, (c) => c.query('CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)'));
    const api = await startTestApi(db.url);
    // After install (whose functions are written for the setting on); only new sessions have it off.
    await withClient(db.url, (c) => c.query(`ALTER DATABASE ${db.name} SET standard_conforming_strings = off`));
    const caller = new pg.Client({ connectionString: api.callerUrl });
    await caller.connect();
    try {
      await caller.query('SET standard_conforming_strings = on');
      for (const sql of HIDDEN_COPIES) {
        await assert.rejects(caller.query('SELECT * FROM pg_background_result(pg_background_launch($1)) AS (x text)', [sql]), COPY_REFUSED, sql);
      }
    } finally {
      await caller.end();
      await api.close();
      await db.drop();
    }
  });
});
