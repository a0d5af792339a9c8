/**
 * A launch waiting in the pool's queue for capacity can be given up, and then
 * its SQL never runs: with the library (an AbortSignal, or its session closing)
 * and with the SQL API (the caller's statement_timeout, or its backend ending).
 * The pool has one connection, held by a job blocked on an advisory lock the
 * test holds; the queued launch inserts a row; once the pool is free again and
 * idle, the row must not be there.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { Engine } from '../../src/index.js';
import type { Session } from '../../src/engine/session.js';
import { createTestDatabase, withClient } from '../helpers/db.js';
import { openFixture, sleep } from '../helpers/engine.js';
import { startTestApi } from '../helpers/sql-api.js';

const LOCK = 4242;
const ONE_WORKER = { pool: { maxConnections: 1 } };

/** Bounded: until `ready` holds (at most ~5 s); whether it did. */
async function until(ready: () => boolean | Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < 250; i++) {
    if (await ready()) return true;
    await sleep(20);
  }
  return false;
}

/** The pool is idle: nothing queued, nothing running, every connection back. */
function idle(engine: Engine): boolean {
  const { pool } = engine;
  return pool.queuedLaunches === 0 && engine.runningJobs === 0 && pool.idleCount === pool.size;
}

async function rowsOf(url: string, msg: string): Promise<number> {
  return withClient(url, async (c) => Number((await c.query('SELECT count(*) AS n FROM log WHERE msg = $1', [msg])).rows[0].n));
}

/** Holds the advisory lock the busy job waits for, until released. */
async function lockHolder(url: string): Promise<{ release(): Promise<void> }> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined);
  await c.connect();
  await c.query('SELECT pg_advisory_lock($1)', [LOCK]);
  return {
    async release() {
      await c.query('SELECT pg_advisory_unlock($1)', [LOCK]).catch(() => undefined);
      await c.end();
    },
  };
}

/** A launch's error (its code 'launched' when it resolved instead), observed from the start. */
function outcome(launch: Promise<unknown>): Promise<{ code: string }> {
  return launch.then(() => ({ code: 'launched' }), (err: { code: string }) => err);
}

const waitingForWorker = (session: Session) => until(() => session.list().some((j) => j.state === 'starting' && j.pid === 0));

describe('a launch waiting for capacity, given up', () => {
  test('the library: aborted by its signal, or by its session closing — its SQL never runs', async () => {
    const db = await createTestDatabase();
    await withClient(db.url, (c) => c.query('CREATE TABLE log (msg text)'));
    const fx = await openFixture(db.url, ONE_WORKER);
    const holder = await lockHolder(db.url);
    let released = false;
    try {
      const busy = await fx.session.launch(`SELECT pg_advisory_lock(${LOCK})`);
      const abort = new AbortController();
      const queued = outcome(fx.session.launch("INSERT INTO log VALUES ('aborted')", { signal: abort.signal }));
      const other = fx.engine.session({ launcher: fx.launcher });
      const closing = outcome(other.launch("INSERT INTO log VALUES ('closed')"));
      assert.ok(await waitingForWorker(fx.session) && (await waitingForWorker(other)), 'both launches wait for the one worker');
      abort.abort();
      other.close();
      await holder.release();
      released = true;
      assert.equal((await queued).code, '57014', 'the aborted launch fails with 57014');
      assert.equal((await closing).code, '55000', "the closed session's launch fails with 55000");
      await fx.session.result(busy);
      const settled = await until(() => idle(fx.engine));
      assert.equal(await rowsOf(db.url, 'aborted'), 0, 'the aborted launch never ran');
      assert.equal(await rowsOf(db.url, 'closed'), 0, "the closed session's launch never ran");
      assert.ok(settled, 'the pool is idle again');
      assert.equal(fx.engine.budgets.held(fx.session.login), 0, 'nothing of their queues is held');
    } finally {
      if (!released) await holder.release();
      await fx.close();
      await db.drop();
    }
  });

  test('the SQL API: a launch given up by the caller\'s statement_timeout is 57014, and never runs; nor one of a backend that ends', async () => {
    const db = await createTestDatabase();
    const api = await startTestApi(db.url, { engine: ONE_WORKER });
    const caller = new pg.Client({ connectionString: api.callerUrl });
    await caller.connect();
    await caller.query('CREATE TABLE log (msg text)');
    let holder = await lockHolder(db.url);
    let released = false;
    try {
      const busy = (await caller.query(`SELECT * FROM pg_background_launch_v2('SELECT pg_advisory_lock(${LOCK})')`)).rows[0];
      await caller.query("SET statement_timeout = '300ms'");
      const launch = outcome(caller.query("SELECT * FROM pg_background_launch_v2('INSERT INTO log VALUES (''timed out'')')"));
      // The pool frees up once the caller has given up — or, should the caller still wait for the
      // answer (as a synchronous dblink call does), later: then the launch would get its worker.
      await Promise.race([launch, sleep(5000)]);
      await holder.release();
      released = true;
      assert.equal((await launch).code, '57014', 'the caller gets 57014');
      await caller.query('RESET statement_timeout');
      await caller.query('SELECT pg_background_wait_v2($1, $2)', [busy.pid, busy.cookie]);
      const settled = await until(() => idle(api.engine));
      assert.equal(await rowsOf(db.url, 'timed out'), 0, 'the abandoned launch never ran');
      assert.ok(settled, 'the pool is idle again');
      // The caller's connection to the server is usable as ever.
      assert.deepEqual((await caller.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT 7')) AS (x int)")).rows, [{ x: 7 }]);

      // A caller backend that ends while its launch waits (here: terminated) abandons it too.
      holder = await lockHolder(db.url);
      released = false;
      const busy2 = (await caller.query(`SELECT * FROM pg_background_launch_v2('SELECT pg_advisory_lock(${LOCK})')`)).rows[0];
      const doomed = new pg.Client({ connectionString: api.callerUrl });
      await doomed.connect();
      doomed.on('error', () => undefined);
      const doomedPid = (await doomed.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      const gone = outcome(doomed.query("SELECT * FROM pg_background_launch_v2('INSERT INTO log VALUES (''disconnected'')')"));
      assert.ok(await until(() => api.engine.pool.queuedLaunches === 1), 'the launch waits for the one worker');
      await withClient(db.url, (c) => c.query('SELECT pg_terminate_backend($1)', [doomedPid]));
      assert.equal((await gone).code, '57P01', 'the caller backend was terminated');
      assert.ok(await until(() => api.engine.pool.queuedLaunches === 0), 'its launch left the queue');
      await holder.release();
      released = true;
      await caller.query('SELECT pg_background_wait_v2($1, $2)', [busy2.pid, busy2.cookie]);
      await doomed.end().catch(() => undefined);
      const settledAgain = await until(() => idle(api.engine));
      assert.equal(await rowsOf(db.url, 'disconnected'), 0, "the launch of a backend that ended never ran");
      assert.ok(settledAgain, 'the pool is idle again');
    } finally {
      if (!released) await holder.release();
      await caller.end();
      await api.close();
      await db.drop();
    }
  });
});
