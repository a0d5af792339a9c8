/**
 * Faults at the backends: a worker backend terminated mid-job, a caller
 * backend killed while it reads a large result, and callers that disconnect
 * or roll back at each step of a launch. Through the library and through the
 * SQL API, on the harness's PostgreSQL. Each checks that nothing is lost or
 * applied twice and that what the caller sees has a clear SQLSTATE.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { PgbgError } from '../../src/index.js';
import { createTestDatabase, withClient } from '../helpers/db.js';
import { openFixture, type Fixture } from '../helpers/engine.js';
import { startTestApi, type TestApi } from '../helpers/sql-api.js';
import { untilRecovered } from '../helpers/activity.js';


describe('faults at the backends', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let fx: Fixture;
  let api: TestApi;
  let admin: pg.Client;

  const activity = async (pid: number) =>
    (await admin.query<{ state: string; wait_event: string | null }>('SELECT state, wait_event FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0];
  const sleeping = (pid: number) => untilRecovered(async () => (await activity(pid))?.wait_event === 'PgSleep', `pid ${pid} reaching its sleep`, 30_000);
  const count = async (id: number) => (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM t WHERE id = $1', [id])).rows[0]!.n;
  const caller = async () => {
    const c = new pg.Client({ connectionString: api.callerUrl });
    c.on('error', () => undefined); // a test may kill its backend
    await c.connect();
    return c;
  };
  const backendPid = async (c: pg.Client) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

  before(async () => {
    db = await createTestDatabase();
    fx = await openFixture(db.url);
    api = await startTestApi(db.url, { apiVersion: '2.0' });
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query('CREATE TABLE t (id int)');
  });
  after(async () => {
    await admin?.end();
    await api?.close();
    await fx?.close();
    await db?.drop();
  });

  test('library: a worker backend terminated mid-job → 57P01 naming the pid, nothing commits, the pool replaces the connection', async () => {
    const h = await fx.session.launch('INSERT INTO t VALUES (1); SELECT pg_sleep(60)');
    await sleeping(h.pid);
    await admin.query('SELECT pg_terminate_backend($1)', [h.pid]);
    await assert.rejects(fx.session.result(h), (err: PgbgError) => {
      assert.match(err.code, /^(57P01|08006)$/, err.message);
      assert.match(`${err.message}\n${err.where ?? ''}`, new RegExp(`\\b${h.pid}\\b`), 'the error names the worker');
      return true;
    });
    assert.equal(await count(1), 0);
    const next = await fx.session.launch('SELECT pg_backend_pid()');
    assert.notEqual(next.pid, h.pid, 'a new connection');
    await fx.session.result(next);
    await untilRecovered(async () => (await activity(h.pid)) === undefined, 'the terminated backend gone', 10_000);
  });

  test('SQL API: a worker backend terminated mid-job → the caller gets 57P01 naming the pid; nothing commits; the next call works', async () => {
    const c = await caller();
    try {
      const h = (await c.query<{ pid: number; cookie: string }>(
        "SELECT (h).pid, (h).cookie FROM (SELECT pg_background_launch('INSERT INTO t VALUES (2); SELECT pg_sleep(60)') AS h) s")).rows[0]!;
      await sleeping(h.pid);
      await admin.query('SELECT pg_terminate_backend($1)', [h.pid]);
      await assert.rejects(c.query('SELECT * FROM pg_background_result($1, $2) AS (x text)', [h.pid, h.cookie]), (err: pg.DatabaseError) => {
        assert.match(err.code ?? '', /^(57P01|08006)$/, err.message);
        assert.match(`${err.message}\n${err.detail ?? ''}`, new RegExp(`\\b${h.pid}\\b`), 'the error names the worker');
        return true;
      });
      assert.equal(await count(2), 0);
      const r = await c.query("SELECT * FROM pg_background_run_query('SELECT 5', col_def => 'x int') AS r(x int)");
      assert.deepEqual(r.rows, [{ x: 5 }]);
    } finally {
      await c.end();
    }
  });

  test('a caller backend killed while reading a large result: the server frees its buffer and the worker', async () => {
    const c2 = await caller();
    const pid2 = await backendPid(c2);
    const h = (await c2.query<{ pid: number; cookie: string }>(
      "SELECT (h).pid, (h).cookie FROM (SELECT pg_background_launch('SELECT g, md5(g::text) FROM generate_series(1, 3000000) g', 65536) AS h) s")).rows[0]!;
    const read = c2.query('SELECT count(*) FROM pg_background_result($1, $2) AS (i int, m text)', [h.pid, h.cookie]);
    read.catch(() => undefined);
    // Reading is under way once the worker waits on its full queue or the server holds its queue.
    await untilRecovered(async () => api.engine.budgets.total > 0 && (await activity(h.pid))?.state === 'active', 'the result being read', 30_000);
    await admin.query('SELECT pg_terminate_backend($1)', [pid2]);
    await assert.rejects(read);
    // The job runs to its end (1.8/2.0: an attached job of a session that ended is not canceled); its rows are dropped.
    await untilRecovered(async () => api.engine.runningJobs === 0, 'the job ending', 120_000);
    await untilRecovered(async () => api.engine.budgets.total === 0, 'the queue memory given back', 10_000);
    await untilRecovered(async () => (await activity(h.pid))?.state !== 'active', 'the worker no longer running', 10_000);
  });

  test('callers that roll back or disconnect at each step of a launch: detached jobs commit, attached ones finish and are discarded', async () => {
    // Rolled back after the launch: the job is autonomous.
    const a = await caller();
    await a.query('BEGIN');
    await a.query("SELECT pg_background_detach((h).pid, (h).cookie) FROM (SELECT pg_background_launch('INSERT INTO t VALUES (10)') AS h) s");
    await a.query('ROLLBACK');
    // Disconnected after a detach.
    await a.query("SELECT pg_background_detach((h).pid, (h).cookie) FROM (SELECT pg_background_launch('SELECT pg_sleep(0.2); INSERT INTO t VALUES (11)') AS h) s");
    await a.end();
    // Disconnected while an attached job runs, its result never read.
    const b = await caller();
    const h = (await b.query<{ pid: number }>("SELECT (h).pid FROM (SELECT pg_background_launch('SELECT pg_sleep(0.5); INSERT INTO t VALUES (12); SELECT 1') AS h) s")).rows[0]!;
    await b.end();
    // Killed (not a clean disconnect) while an attached job runs.
    const k = await caller();
    const kp = await backendPid(k);
    await k.query("SELECT pg_background_launch('SELECT pg_sleep(0.5); INSERT INTO t VALUES (13)')");
    await admin.query('SELECT pg_terminate_backend($1)', [kp]);
    await untilRecovered(async () => (await count(10)) + (await count(11)) + (await count(12)) + (await count(13)) === 4, 'every job committing', 30_000);
    await untilRecovered(async () => api.engine.runningJobs === 0, 'the jobs ending', 30_000);
    for (const id of [10, 11, 12, 13]) assert.equal(await count(id), 1, `job ${id} applied exactly once`);
    await untilRecovered(async () => (await activity(h.pid))?.state !== 'active', 'the worker free', 10_000);
    // The sessions of the callers that went are gone from the server: nothing tracked, nothing held.
    await untilRecovered(async () => api.engine.budgets.total === 0, 'no queue memory held', 10_000);
    await withClient(db.url, async (c2) => {
      const left = await c2.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'pg_background:%' AND state = 'active'");
      assert.deepEqual(left.rows, [{ n: 0 }]);
    });
  });
});
