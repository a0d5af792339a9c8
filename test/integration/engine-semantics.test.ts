import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLoginRole, serverUrl, urlFor, withClient } from '../helpers/db.js';
import { openFixture, sleep, useFixture } from '../helpers/engine.js';
import { until, untilGone, untilLeft, untilSleeping } from '../helpers/activity.js';
import { progressSql, type PgbgError } from '../../src/index.js';

describe('job semantics', () => {
  const ctx = useFixture('CREATE TABLE log (id serial PRIMARY KEY, msg text)');
  const count = async (msg: string) =>
    Number((await ctx.fx.launcher.query('SELECT count(*) AS n FROM log WHERE msg = $1', [msg])).rows[0].n);

  test('autonomy: a job launched inside a transaction commits after the caller rolls back', async () => {
    await ctx.fx.launcher.query('BEGIN');
    let h;
    try {
      await ctx.fx.launcher.query("INSERT INTO log(msg) VALUES ('caller')");
      h = await ctx.fx.session.launch("INSERT INTO log(msg) VALUES ('audit')");
      await ctx.fx.session.wait(h);
    } finally {
      // Also when the test fails: the shared launcher must not stay inside the transaction.
      await ctx.fx.launcher.query('ROLLBACK');
    }
    assert.equal(await count('caller'), 0);
    assert.equal(await count('audit'), 1);
    await ctx.fx.session.result(h);
  });

  test('a detached job runs to completion and commits', async () => {
    const h = await ctx.fx.session.launch("SELECT pg_sleep(0.3); INSERT INTO log(msg) VALUES ('detached')");
    ctx.fx.session.detach(h);
    await assert.rejects(ctx.fx.session.wait(h), { code: '42704' });
    assert.ok(await ctx.fx.engine.drain(10_000));
    assert.equal(await count('detached'), 1);
  });

  test('a canceled multi-statement job leaves no rows (cancel with a grace period uses the cancel request)', async () => {
    const h = await ctx.fx.session.launch("INSERT INTO log(msg) VALUES ('cancel-1'); SELECT pg_sleep(30); INSERT INTO log(msg) VALUES ('cancel-2')");
    // The first INSERT is done once the job sleeps: the cancel has a write to undo.
    await untilSleeping(ctx.db.url, h.pid);
    await ctx.fx.session.cancel(h, { graceMs: 5000 });
    const info = ctx.fx.session.list().find((j) => j.pid === h.pid);
    assert.equal(info?.state, 'canceled');
    await assert.rejects(ctx.fx.session.result(h), { code: '57014' });
    // Counted once the backend has left the job (its transaction over); a backend still asleep would
    // keep the rows uncommitted and make a count prove nothing.
    await untilLeft(ctx.db.url, h.pid, 'cancel-1');
    assert.equal(await count('cancel-1'), 0);
    assert.equal(await count('cancel-2'), 0);
  });

  test('a job canceled as soon as its launch returns never runs (with and without grace)', async () => {
    for (const graceMs of [0, 2000]) {
      const msg = `instant-cancel-${graceMs}`;
      const h = await ctx.fx.session.launch(`INSERT INTO log(msg) VALUES ('${msg}')`);
      await ctx.fx.session.cancel(h, { graceMs });
      assert.equal(ctx.fx.session.list().find((j) => j.pid === h.pid)?.state, 'canceled', msg);
      await assert.rejects(ctx.fx.session.result(h), { code: '57014' });
      assert.ok(await ctx.fx.engine.drain(10_000));
      assert.equal(await count(msg), 0, msg);
    }
  });

  test('cancel without grace terminates the backend; the server keeps running', async () => {
    const h = await ctx.fx.session.launch("INSERT INTO log(msg) VALUES ('term'); SELECT pg_sleep(30)");
    await untilSleeping(ctx.db.url, h.pid);
    await ctx.fx.session.cancel(h);
    assert.equal(ctx.fx.session.list().find((j) => j.pid === h.pid)?.state, 'canceled');
    // Terminated: the backend exits (bounded wait), rolling the INSERT back.
    await untilGone(ctx.db.url, h.pid);
    assert.equal(await count('term'), 0);
    ctx.fx.session.detach(h);
  });

  test('cancel escalates to terminate when the statement ignores the cancel request within the grace period', async () => {
    // A cancel request cannot interrupt a backend blocked on a lock wait? It can; instead block in a
    // procedure that swallows query_canceled, so only terminate stops it.
    await ctx.fx.launcher.query(`CREATE OR REPLACE FUNCTION stubborn() RETURNS void LANGUAGE plpgsql AS $$
      BEGIN FOR i IN 1..600 LOOP BEGIN PERFORM pg_sleep(0.05); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$`);
    const h = await ctx.fx.session.launch("INSERT INTO log(msg) VALUES ('stubborn'); SELECT stubborn()");
    // In the loop (its pg_sleep) with the INSERT done, so the cancel request is the one it swallows.
    await untilSleeping(ctx.db.url, h.pid);
    await ctx.fx.session.cancel(h, { graceMs: 300 });
    assert.equal(ctx.fx.session.list().find((j) => j.pid === h.pid)?.state, 'canceled');
    // Only a terminate ends the loop (30 s otherwise): the backend exits, the INSERT rolled back.
    await untilGone(ctx.db.url, h.pid);
    assert.equal(await count('stubborn'), 0);
    ctx.fx.session.detach(h);
  });

  test('a cancel that arrives after the job committed reports the truth: stopped, the rows stay', async () => {
    const h = await ctx.fx.session.launch("INSERT INTO log(msg) VALUES ('before-cancel')");
    await ctx.fx.session.wait(h);
    await ctx.fx.session.cancel(h, { graceMs: 1000 });
    const row = ctx.fx.session.list().find((j) => j.pid === h.pid);
    assert.deepEqual([row?.state, row?.lastError], ['stopped', null]);
    assert.deepEqual((await ctx.fx.session.result(h)).rows, [{ command: 'INSERT 0 1' }]);
    assert.equal(await count('before-cancel'), 1);
  });

  test('a worker connection that was sent a cancel request is closed, never reused', async () => {
    const h = await ctx.fx.session.launch('SELECT pg_sleep(30)');
    await untilSleeping(ctx.db.url, h.pid);
    await ctx.fx.session.cancel(h, { graceMs: 5000 });
    await assert.rejects(ctx.fx.session.result(h), { code: '57014' });
    // The cancel request stopped the statement (the backend lives on), and the pool closes the connection.
    await untilGone(ctx.db.url, h.pid);
    const next = await ctx.fx.session.launch('SELECT pg_backend_pid() AS pid');
    assert.notEqual(next.pid, h.pid);
    await ctx.fx.session.result(next);
  });

  test('a worker whose backend is terminated mid-job by someone else: 08006 naming the pid, nothing commits', async () => {
    const h = await ctx.fx.session.launch("INSERT INTO log(msg) VALUES ('lost'); SELECT pg_sleep(30)");
    await untilSleeping(ctx.db.url, h.pid);
    await withClient(ctx.db.url, (c) => c.query('SELECT pg_terminate_backend($1)', [h.pid]));
    assert.equal(await ctx.fx.session.waitTimeout(h, 10_000), true);
    assert.equal(ctx.fx.session.list().find((j) => j.pid === h.pid)?.state, 'error');
    await assert.rejects(ctx.fx.session.result(h), {
      code: '08006', message: `lost connection to worker process with PID ${h.pid}`, detail: 'terminating connection due to administrator command',
    });
    await untilGone(ctx.db.url, h.pid);
    assert.equal(await count('lost'), 0);
  });

  test('worker errors keep SQLSTATE, detail, hint, constraint and the worker pid; position points into the caller\'s SQL', async () => {
    await ctx.fx.launcher.query('CREATE TABLE uniq (k int PRIMARY KEY)');
    const h = await ctx.fx.session.launch('INSERT INTO uniq VALUES (1); INSERT INTO uniq VALUES (1)');
    const err = (await ctx.fx.session.result(h).then(() => undefined, (e: unknown) => e)) as PgbgError;
    assert.equal(err.code, '23505');
    assert.match(err.detail ?? '', /Key \(k\)=\(1\) already exists/);
    assert.equal(err.constraint, 'uniq_pkey');
    assert.equal(err.table, 'uniq');
    assert.equal(err.workerPid, h.pid);
    assert.match(err.where ?? '', new RegExp(`background worker, pid ${h.pid}`));
    const h2 = await ctx.fx.session.launch(`DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = 'P0042', DETAIL = 'd', HINT = 'h'; END $$`);
    await assert.rejects(ctx.fx.session.result(h2), { code: 'P0042', message: 'boom', detail: 'd', hint: 'h' });
    const h3 = await ctx.fx.session.launch('SELECT nosuchcolumn FROM log');
    await assert.rejects(ctx.fx.session.result(h3), { code: '42703', position: '8' });
    assert.equal(await withClient(ctx.db.url, (c) => c.query('SELECT count(*)::int AS n FROM uniq')).then((r) => r.rows[0].n), 0);
  });

  test('notices reach the launcher, and progress is readable while the job runs', async () => {
    const seen: string[] = [];
    const sql = `DO $$ BEGIN RAISE NOTICE 'hello from worker'; END $$; ${progressSql(40, 'forty')}; SELECT pg_sleep(1); ${progressSql(100, 'done')}`;
    const h = await ctx.fx.session.launch(sql, { onNotice: (n) => seen.push(n.message) });
    assert.equal(ctx.fx.session.progress(h).pct, -1);
    let mid = ctx.fx.session.progress(h);
    for (let i = 0; i < 50 && mid.pct < 0; i++) {
      await sleep(50);
      mid = ctx.fx.session.progress(h);
    }
    assert.deepEqual([mid.pct, mid.message], [40, 'forty']);
    const r = await ctx.fx.session.result(h);
    assert.deepEqual(seen, ['hello from worker']);
    assert.deepEqual(r.notices.map((n) => n.message), ['hello from worker']);
  });

  test('transaction control and COPY are refused before anything runs', async () => {
    await assert.rejects(ctx.fx.session.launch("INSERT INTO log(msg) VALUES ('tx'); COMMIT"), {
      code: '0A000', message: 'transaction control statements are not allowed in pg_background',
    });
    await assert.rejects(ctx.fx.session.launch('COPY log TO STDOUT'), { code: '0A000', message: 'COPY protocol not allowed in pg_background' });
    assert.equal(await count('tx'), 0);
  });

  test('a lone VACUUM runs; inside a multi-statement string it fails as PostgreSQL would', async () => {
    const h = await ctx.fx.session.launch('VACUUM log');
    assert.deepEqual((await ctx.fx.session.result(h)).rows, [{ command: 'VACUUM' }]);
    const h2 = await ctx.fx.session.launch('SELECT 1; VACUUM log');
    await assert.rejects(ctx.fx.session.result(h2), { code: '25001' });
  });

  test('queue size bounds and the per-session handle limit', async () => {
    await assert.rejects(ctx.fx.session.launch('SELECT 1', { queueSize: 63 }), { code: '22023', message: 'queue size must be at least 64 bytes' });
    await assert.rejects(ctx.fx.session.launch('SELECT 1', { queueSize: 2 ** 29 }), { code: '22023' });
    const s = ctx.fx.engine.session({ launcher: ctx.fx.launcher, settings: { maxWorkers: 2 } });
    const a = await s.launch('SELECT 1');
    const b = await s.launch('SELECT 2');
    await assert.rejects(s.launch('SELECT 3'), { code: '53400', message: 'too many background workers' });
    await s.result(a);
    const c = await s.launch('SELECT 3');
    assert.deepEqual((await s.result(c, { rowMode: 'array' })).rows, [[3]]);
    await s.result(b);
    s.close();
  });

  test('submit disables results; wait, waitTimeout, list and stats', async () => {
    const base = ctx.fx.session.stats();
    const h = await ctx.fx.session.submit('SELECT g FROM generate_series(1, 100000) g');
    await ctx.fx.session.wait(h); // results are discarded as they arrive, so it never stalls
    await assert.rejects(ctx.fx.session.result(h), { code: '0A000', message: `results are disabled for PID ${h.pid} (submitted via submit_v2)` });
    const slow = await ctx.fx.session.launch('SELECT pg_sleep(0.5)');
    assert.equal(await ctx.fx.session.waitTimeout(slow, 10), false);
    const row = ctx.fx.session.list().find((j) => j.pid === slow.pid)!;
    assert.equal(row.state, 'running');
    assert.equal(row.sqlPreview, 'SELECT pg_sleep(0.5)');
    assert.equal(row.cookie, slow.cookie);
    assert.equal(await ctx.fx.session.waitTimeout(slow, 10_000), true);
    assert.equal(ctx.fx.session.list().find((j) => j.pid === slow.pid)?.state, 'stopped');
    // A job is counted once its worker is back in the pool, just after it ended (bounded wait).
    await until(() => ctx.fx.session.stats().workersCompleted >= base.workersCompleted + 2, 'both jobs counted');
    const now = ctx.fx.session.stats();
    const delta = (k: 'workersLaunched' | 'workersCompleted' | 'workersFailed' | 'workersCanceled' | 'workersActive') => now[k] - base[k];
    assert.deepEqual(
      { launched: delta('workersLaunched'), completed: delta('workersCompleted'), failed: delta('workersFailed'), canceled: delta('workersCanceled') },
      { launched: 2, completed: 2, failed: 0, canceled: 0 },
    );
    assert.equal(now.workersActive, 0);
    assert.equal(now.maxWorkers, 16);
    await ctx.fx.session.result(slow);
    ctx.fx.session.detach(h);
  });

  test('worker_timeout cancels a long job; it falls back to the launcher\'s statement_timeout', async () => {
    const s = ctx.fx.engine.session({ launcher: ctx.fx.launcher, settings: { workerTimeoutMs: 200 } });
    const h = await s.launch("INSERT INTO log(msg) VALUES ('timeout'); SELECT pg_sleep(30)");
    await assert.rejects(s.result(h), { code: '57014' });
    s.close();
    await untilLeft(ctx.db.url, h.pid, "'timeout'");
    await ctx.fx.launcher.query("SET statement_timeout = '250ms'");
    try {
      const h2 = await ctx.fx.session.launch("INSERT INTO log(msg) VALUES ('timeout'); SELECT pg_sleep(30)");
      await assert.rejects(ctx.fx.session.result(h2), { code: '57014' });
      await untilLeft(ctx.db.url, h2.pid, "'timeout'");
    } finally {
      await ctx.fx.launcher.query('RESET statement_timeout');
    }
    assert.equal(await count('timeout'), 0);
  });

  test('closing a session leaves its attached jobs running to completion', async () => {
    const s = ctx.fx.engine.session({ launcher: ctx.fx.launcher });
    await s.launch("SELECT pg_sleep(0.3); INSERT INTO log(msg) VALUES ('closed')");
    s.close();
    assert.ok(await ctx.fx.engine.drain(10_000));
    assert.equal(await count('closed'), 1);
  });

  test('the launcher\'s settings are read at every launch, also after its session dropped the prepared capture', async () => {
    const tz = async () => {
      const h = await ctx.fx.session.launch("SELECT current_setting('TimeZone') AS tz");
      return (await ctx.fx.session.result(h)).rows[0]!.tz as string;
    };
    try {
      await ctx.fx.launcher.query("SET TimeZone = 'Asia/Tokyo'");
      assert.equal(await tz(), 'Asia/Tokyo');
      await ctx.fx.launcher.query("SET TimeZone = 'Europe/Paris'");
      assert.equal(await tz(), 'Europe/Paris', 'a later SET is seen: the prepared capture reads the settings when it runs');
      const prepared = "SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name LIKE 'pgbg_capture_launch_context_%'";
      assert.equal((await ctx.fx.launcher.query(prepared)).rows[0].n, 1);
      // DISCARD ALL also resets TimeZone; DEALLOCATE ALL only drops the statement.
      await ctx.fx.launcher.query('DISCARD ALL');
      await ctx.fx.launcher.query("SET TimeZone = 'America/Lima'");
      assert.equal(await tz(), 'America/Lima');
      await ctx.fx.launcher.query('DEALLOCATE ALL');
      assert.equal(await tz(), 'America/Lima');
      assert.equal((await ctx.fx.launcher.query(prepared)).rows[0].n, 1, 'prepared again, once');
      // Turned off (for poolers that cannot keep prepared statements): same answers, nothing prepared.
      ctx.fx.session.settings.preparedCapture = false;
      await ctx.fx.launcher.query('DEALLOCATE ALL');
      await ctx.fx.launcher.query("SET TimeZone = 'Asia/Kolkata'");
      assert.equal(await tz(), 'Asia/Kolkata');
      assert.equal((await ctx.fx.launcher.query(prepared)).rows[0].n, 0);
    } finally {
      ctx.fx.session.settings.preparedCapture = true;
      await ctx.fx.launcher.query('RESET TimeZone');
    }
  });

  test('the worker runs with the launcher\'s settings and role, and cannot take a role the launcher lacks', async () => {
    const member = await createLoginRole('pgbg_member');
    const stranger = await createLoginRole('pgbg_stranger');
    await withClient(serverUrl(), async (c) => {
      await c.query(`GRANT ALL ON DATABASE ${ctx.db.name} TO ${member.name}`);
    });
    const url = urlFor(ctx.db.name, member);
    const app = await openFixture(url);
    app.session.settings.customSettings = ['myapp.tenant', 'myapp.unset'];
    try {
      await app.launcher.query("SET search_path = pg_catalog, public; SET TimeZone = 'Asia/Tokyo'; SET DateStyle = 'German, DMY'; SELECT set_config('myapp.tenant', 'acme', false)");
      const h = await app.session.launch("SELECT current_setting('search_path') AS sp, current_setting('TimeZone') AS tz, current_setting('DateStyle') AS ds, current_setting('myapp.tenant') AS tenant, current_user AS who");
      assert.deepEqual((await app.session.result(h)).rows, [{ sp: 'pg_catalog, public', tz: 'Asia/Tokyo', ds: 'German, DMY', tenant: 'acme', who: member.name }]);
      // A superuser's session can SET ROLE; its worker takes the same role (logged in as the launcher's login).
      const h2 = await ctx.fx.session.launch('SELECT current_user::text AS who, session_user::text AS login', { context: { role: stranger.name, settings: {}, statementTimeoutMs: 0 } });
      assert.deepEqual((await ctx.fx.session.result(h2)).rows, [{ who: stranger.name, login: decodeURIComponent(new URL(ctx.db.url).username) }]);
      // The member's worker logs in as the member: told to take a role it is not a member of, it fails.
      const h3 = await app.session.launch('SELECT current_user', { context: { role: stranger.name, settings: {}, statementTimeoutMs: 0 } });
      await assert.rejects(app.session.result(h3), { code: '42501' });
    } finally {
      await app.close();
      await withClient(serverUrl(), async (c) => {
        await c.query(`REVOKE ALL ON DATABASE ${ctx.db.name} FROM ${member.name}`);
        await c.query(`DROP ROLE ${member.name}`);
        await c.query(`DROP ROLE ${stranger.name}`);
      });
    }
  });
});
