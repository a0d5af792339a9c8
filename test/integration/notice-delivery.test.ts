/**
 * A job's notices count as handed out only once they reached the caller: a
 * notices request the caller gives up (statement_timeout) while the server is
 * still on it — here held up re-reading the role's key behind a lock — leaves
 * them for the job's result, which raises them then.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createTestDatabase } from '../helpers/db.js';
import { sleep } from '../helpers/engine.js';
import { startTestApi, type TestApi } from '../helpers/sql-api.js';

/** A little longer than the server trusts a role's key read for a request (role-keys.ts, FRESH_MS). */
const KEY_REREAD_MS = 1100;

describe('notices given up on the way', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let api: TestApi;
  let caller: pg.Client;
  const raised: string[] = [];

  before(async () => {
    db = await createTestDatabase();
    api = await startTestApi(db.url);
    caller = new pg.Client({ connectionString: api.callerUrl });
    await caller.connect();
    caller.on('notice', (n) => raised.push(n.message ?? ''));
  });
  after(async () => {
    await caller?.end();
    await api?.close();
    await db?.drop();
  });

  test("wait_v2's notices step given up by statement_timeout: the result raises them after all", async () => {
    const sql = "DO $$ BEGIN RAISE NOTICE 'first'; RAISE NOTICE 'second'; END $$";
    const h = (await caller.query('SELECT * FROM pg_background_launch_v2($1)', [sql])).rows[0];
    assert.equal((await caller.query('SELECT pg_background_wait_v2_timeout($1, $2, 10000) AS done', [h.pid, h.cookie])).rows[0].done, true);
    // The next request makes the server read the role's key again, and that read waits for this lock.
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    await locker.query('BEGIN; LOCK TABLE pgbg_private.role_keys IN ACCESS EXCLUSIVE MODE');
    let locked = true;
    try {
      await sleep(KEY_REREAD_MS);
      raised.length = 0;
      await caller.query("SET statement_timeout = '200ms'");
      // What pg_background_wait_v2 does once the job has ended: ask for its notices and raise them.
      const asked = caller.query('SELECT pgbg_private.raise_notices($1)', [h.pid]).then(() => 'raised', (e: { code: string }) => e.code);
      // The lock goes once the caller has given up — or, should it still wait for the answer, later.
      await Promise.race([asked, sleep(3000)]);
      await locker.query('COMMIT');
      locked = false;
      assert.equal(await asked, '57014');
      await caller.query('RESET statement_timeout');
      assert.deepEqual(raised, [], 'the given-up request raised nothing');
      const r = await caller.query('SELECT * FROM pg_background_result_v2($1, $2) AS (tag text)', [h.pid, h.cookie]);
      assert.deepEqual(r.rows, [{ tag: 'DO' }]);
      assert.deepEqual(raised, ['first', 'second'], 'the result raises the notices the caller never got');
    } finally {
      if (locked) await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
      await caller.query('RESET statement_timeout');
    }
  });
});
