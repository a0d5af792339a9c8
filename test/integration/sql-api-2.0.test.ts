/**
 * pg_background 2.0's SQL surface through the installed wrappers, called by a
 * real client: every function, view and error code of the 2.0 contract, the
 * _v2 aliases, and the upgrade of a 1.8 install with live sessions.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { install } from '../../src/install/install.js';
import { createLoginRole, createTestDatabase, serverUrl, urlFor, withClient } from '../helpers/db.js';
import { MANAGED, startTestApi, type TestApi } from '../helpers/sql-api.js';
import { untilGone, untilLeft, untilSleeping } from '../helpers/activity.js';

const handleOf = async (c: pg.Client, sql: string): Promise<{ pid: number; cookie: string }> =>
  (await c.query<{ pid: number; cookie: string }>(`SELECT (h).pid, (h).cookie FROM (SELECT ${sql} AS h) s`)).rows[0]!;

describe('SQL API 2.0', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let api: TestApi;
  let c: pg.Client;

  before(async () => {
    db = await createTestDatabase();
    api = await startTestApi(db.url, { apiVersion: '2.0' });
    c = new pg.Client({ connectionString: api.callerUrl });
    await c.connect();
    await c.query('CREATE TABLE t (id int)');
  });
  after(async () => {
    await c?.end();
    await api?.close();
    await db?.drop();
  });

  test('the surface: 7 types, 2 views, 51 functions (23 of them deprecated _v2 aliases), 3 SECURITY DEFINER helpers', async () => {
    const n = async (sql: string) => (await c.query<{ n: number }>(sql)).rows[0]!.n;
    assert.equal(await n("SELECT count(*)::int AS n FROM pg_type t JOIN pg_class r ON r.oid = t.typrelid AND r.relkind = 'c' WHERE t.typnamespace = 'public'::regnamespace AND t.typname LIKE 'pg\\_background\\_%'"), 7);
    assert.equal(await n("SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'v' AND relname LIKE 'pg\\_background\\_%'"), 2);
    assert.equal(await n("SELECT count(*)::int AS n FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname LIKE 'pg\\_background\\_%'"), 51);
    assert.equal(await n("SELECT count(*)::int AS n FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname LIKE 'pg\\_background\\_%\\_v2'"), 23);
    const definers = await c.query("SELECT proname FROM pg_proc WHERE prosecdef AND pronamespace IN ('public'::regnamespace, 'pgbg_private'::regnamespace) AND proname NOT LIKE 'dblink%' ORDER BY 1");
    assert.deepEqual(definers.rows.map((r) => r.proname), ['pg_background_drop_executor_role', 'pg_background_grant_privileges', 'pg_background_revoke_privileges']);
    const comment = await c.query("SELECT obj_description('pg_background_wait_any_v2(pg_background_handle[], int4)'::regprocedure, 'pg_proc') AS d");
    assert.equal(comment.rows[0].d, 'DEPRECATED in 2.0: use pg_background_wait_any. Removed in 3.0.');
    // (Where the installer may not store setting defaults — managed PostgreSQL — an unset setting reads as its default.)
    if (!MANAGED) assert.equal((await c.query('SHOW pg_background.max_workers')).rows[0]['pg_background.max_workers'], '16');
  });

  test('launch returns a handle; result reads it once; the worker runs as the caller', async () => {
    const r = await c.query("SELECT r.* FROM (SELECT pg_background_launch('SELECT current_user::text') AS h OFFSET 0) s, pg_background_result((s.h).pid, (s.h).cookie) AS r(who text)");
    assert.deepEqual(r.rows, [{ who: new URL(api.callerUrl).username }]);
    const h = await handleOf(c, "pg_background_launch('SELECT 1')");
    await c.query('SELECT * FROM pg_background_result($1, $2) AS (x int)', [h.pid, h.cookie]);
    await assert.rejects(c.query('SELECT * FROM pg_background_result($1, $2) AS (x int)', [h.pid, h.cookie]), { code: '42704' });
  });

  test('STRICT two-argument forms give NULL for NULL; the labelled forms refuse a NULL statement (22004)', async () => {
    assert.equal((await c.query('SELECT pg_background_launch(NULL) IS NULL AS n')).rows[0].n, true);
    assert.equal((await c.query('SELECT pg_background_wait(NULL, NULL) IS NULL AS n')).rows[0].n, true);
    await assert.rejects(c.query("SELECT pg_background_launch(NULL, 0, 'x')"), { code: '22004', message: 'sql parameter cannot be NULL' });
    await assert.rejects(c.query(`SELECT pg_background_launch('SELECT 1', 0, '${'x'.repeat(65)}')`), { code: '22001', message: 'label too long' });
  });

  test('labels: in the list, the views and the worker\'s application_name (pg_background:<label>:<pid>)', async () => {
    const h = await handleOf(c, "pg_background_launch('SELECT pg_sleep(5)', 0, 'nightly-report')");
    try {
      await untilSleeping(db.url, h.pid);
      const app = await withClient(serverUrl(), async (s) => (await s.query('SELECT application_name FROM pg_stat_activity WHERE pid = $1', [h.pid])).rows[0]?.application_name);
      assert.equal(app, `pg_background:nightly-report:${h.pid}`);
      const list = await c.query('SELECT label, state FROM pg_background_list WHERE pid = $1', [h.pid]);
      assert.deepEqual(list.rows, [{ label: 'nightly-report', state: 'running' }]);
      const activity = await c.query('SELECT pgbg_state, backend_state, wait_event FROM pg_background_activity WHERE pid = $1', [h.pid]);
      assert.deepEqual(activity.rows, [{ pgbg_state: 'running', backend_state: 'active', wait_event: 'PgSleep' }]);
      const nine = await c.query(`SELECT count(*)::int AS n FROM pg_background_list() AS (pid int4, cookie int8, launched_at timestamptz, user_id oid,
        queue_size int4, state text, sql_preview text, last_error text, consumed bool)`);
      assert.equal(nine.rows[0].n, 1);
      await assert.rejects(c.query('SELECT * FROM pg_background_list() AS (pid int4)'), { code: '42804', message: 'pg_background_list() requires a 9- or 10-column definition list' });
    } finally {
      await c.query('SELECT pg_background_cancel($1, $2)', [h.pid, h.cookie]);
      await c.query('SELECT pg_background_detach($1, $2)', [h.pid, h.cookie]);
    }
  });

  test('wait: 0 blocks until the end; > 0 says false while running; wait does not raise the job\'s error', async () => {
    const h = await handleOf(c, "pg_background_launch('SELECT pg_sleep(0.6); SELECT 1/0')");
    assert.equal((await c.query('SELECT pg_background_wait($1, $2, 50) AS w', [h.pid, h.cookie])).rows[0].w, false);
    assert.equal((await c.query('SELECT pg_background_wait($1, $2) AS w', [h.pid, h.cookie])).rows[0].w, true);
    const info = await c.query('SELECT * FROM pg_background_result_info($1, $2)', [h.pid, h.cookie]);
    assert.equal(info.rows[0].completed, true);
    assert.equal(info.rows[0].has_error, true);
    assert.equal(info.rows[0].command_tag, '');
    const e = await c.query('SELECT * FROM pg_background_error_info($1, $2)', [h.pid, h.cookie]);
    assert.equal(e.rows[0].sqlstate, '22012');
    assert.equal(e.rows[0].message, 'division by zero');
    await assert.rejects(c.query('SELECT * FROM pg_background_result($1, $2) AS (x int)', [h.pid, h.cookie]), { code: '22012' });
  });

  test('result_info: bare command tag and row count of the last statement; error_info NULL without an error; full_sql', async () => {
    const h = await handleOf(c, "pg_background_launch('INSERT INTO t SELECT generate_series(1, 5)')");
    await c.query('SELECT pg_background_wait($1, $2)', [h.pid, h.cookie]);
    const info = await c.query('SELECT row_count, command_tag, completed, has_error, started_at IS NOT NULL AS s, finished_at >= started_at AS f FROM pg_background_result_info($1, $2)', [h.pid, h.cookie]);
    assert.deepEqual(info.rows[0], { row_count: '5', command_tag: 'INSERT', completed: true, has_error: false, s: true, f: true });
    assert.equal((await c.query('SELECT pg_background_error_info($1, $2) IS NULL AS n', [h.pid, h.cookie])).rows[0].n, true);
    assert.equal((await c.query('SELECT pg_background_full_sql($1, $2) AS s', [h.pid, h.cookie])).rows[0].s, 'INSERT INTO t SELECT generate_series(1, 5)');
    await c.query('SELECT pg_background_detach($1, $2)', [h.pid, h.cookie]);
  });

  test('error_info carries every field of the worker\'s error (constraint, table, schema, column)', async () => {
    await c.query('CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (pid int NOT NULL REFERENCES parent (id))');
    const h = await handleOf(c, "pg_background_launch('INSERT INTO child VALUES (1)')");
    await c.query('SELECT pg_background_wait($1, $2)', [h.pid, h.cookie]);
    const e = (await c.query('SELECT * FROM pg_background_error_info($1, $2)', [h.pid, h.cookie])).rows[0];
    assert.equal(e.sqlstate, '23503');
    assert.equal(e.schema_name, 'public');
    assert.equal(e.table_name, 'child');
    assert.equal(e.constraint_name, 'child_pid_fkey');
    assert.match(e.detail, /is not present in table "parent"/);
    const o = (await c.query('SELECT * FROM pg_background_outcome($1, $2)', [h.pid, h.cookie])).rows[0];
    assert.equal(o.state, 'stopped');
    assert.equal(o.sqlstate, '23503');
    await c.query('SELECT pg_background_detach($1, $2)', [h.pid, h.cookie]);
    const gone = (await c.query('SELECT * FROM pg_background_outcome($1, $2)', [h.pid, h.cookie])).rows[0];
    assert.deepEqual({ pid: gone.pid, state: gone.state, completed: gone.completed }, { pid: h.pid, state: null, completed: null }, 'outcome never raises');
  });

  test('the handle checks: not tracked 42704, wrong cookie 55000, submitted 0A000 with 2.0\'s wording', async () => {
    await assert.rejects(c.query('SELECT pg_background_detach(1, 1)'), { code: '42704', message: 'PID 1 is not attached to this session' });
    // As the C extension raises them: no dblink CONTEXT, connection name or wrapper SQL.
    for (const call of ['SELECT pg_background_wait(1, 1)', 'SELECT * FROM pg_background_result(1, 1) AS (x int)', 'SELECT pg_background_cancel(1, 1)']) {
      await assert.rejects(c.query(call), (err: pg.DatabaseError) => err.code === '42704' && !/dblink|pgbg_\d|SQL statement/.test(err.where ?? ''));
    }
    const h = await handleOf(c, "pg_background_submit('SELECT 1')");
    await assert.rejects(c.query('SELECT pg_background_detach($1, 12345)', [h.pid]), { code: '55000' });
    await assert.rejects(c.query('SELECT * FROM pg_background_result($1, $2) AS (x int)', [h.pid, h.cookie]), {
      code: '0A000', message: `results are disabled for PID ${h.pid} (submitted via pg_background_submit)`,
    });
    await c.query('SELECT pg_background_detach($1, $2)', [h.pid, h.cookie]);
  });

  test('too many workers: 53400 with 2.0\'s detail', async () => {
    await c.query('SET pg_background.max_workers = 1');
    const h = await handleOf(c, "pg_background_launch('SELECT pg_sleep(2)')");
    try {
      await assert.rejects(c.query("SELECT pg_background_launch('SELECT 1')"), { code: '53400', detail: 'Current limit is 1 concurrent workers per session.' });
    } finally {
      await c.query('RESET pg_background.max_workers');
      await c.query('SELECT pg_background_cancel($1, $2)', [h.pid, h.cookie]);
      await c.query('SELECT pg_background_detach($1, $2)', [h.pid, h.cookie]);
    }
  });

  test('wait_any returns the job that finished first, in the order they finish, not the array order', async () => {
    const slow = await handleOf(c, "pg_background_launch('SELECT pg_sleep(3)')");
    const fast = await handleOf(c, "pg_background_launch('SELECT pg_sleep(0.3)')");
    const arr = `ARRAY[ROW(${slow.pid}, ${slow.cookie}), ROW(${fast.pid}, ${fast.cookie}), NULL]::pg_background_handle[]`;
    const first = await c.query(`SELECT (h).pid, (h).cookie FROM (SELECT pg_background_wait_any(${arr}) AS h) s`);
    assert.deepEqual(first.rows[0], fast);
    assert.equal((await c.query(`SELECT pg_background_wait_any(${arr}, 100) IS NOT NULL AS found`)).rows[0].found, true, 'the ended one is found at once');
    assert.equal((await c.query('SELECT pg_background_wait_any(ARRAY[]::pg_background_handle[]) IS NULL AS n')).rows[0].n, true);
    assert.equal((await c.query('SELECT (pg_background_wait_any(ARRAY[ROW(1, 1)]::pg_background_handle[], 100)).pid IS NULL AS n')).rows[0].n, true, 'stale handles never finish');
    const drained = await c.query(`SELECT pid, completed FROM pg_background_drain(${arr})`);
    assert.deepEqual(drained.rows, [{ pid: slow.pid, completed: true }, { pid: fast.pid, completed: true }]);
    assert.equal((await c.query('SELECT count(*)::int AS n FROM pg_background_list')).rows[0].n, 0, 'drain detached them');
  });

  test('drain with a budget reports the ones it could not wait for, and keeps tracking them', async () => {
    const slow = await handleOf(c, "pg_background_launch('SELECT pg_sleep(2)')");
    const rows = await c.query(`SELECT pid, completed FROM pg_background_drain(ARRAY[ROW(${slow.pid}, ${slow.cookie})]::pg_background_handle[], 100)`);
    assert.deepEqual(rows.rows, [{ pid: slow.pid, completed: false }]);
    assert.equal((await c.query('SELECT count(*)::int AS n FROM pg_background_list')).rows[0].n, 1);
    await c.query('SELECT pg_background_cancel($1, $2)', [slow.pid, slow.cookie]);
    await c.query('SELECT pg_background_detach_all()');
  });

  test('cancel: cooperative (57014, nothing commits), counted once; cancel_by_label, cancel_all, purge and detach_all count', async () => {
    const canceledBefore = Number((await c.query('SELECT workers_canceled FROM pg_background_stats()')).rows[0].workers_canceled);
    const h = await handleOf(c, "pg_background_launch('INSERT INTO t VALUES (99); SELECT pg_sleep(10)', 0, 'batch-1')");
    await handleOf(c, "pg_background_launch('SELECT pg_sleep(10)', 0, 'batch-2')");
    await handleOf(c, "pg_background_launch('SELECT pg_sleep(10)', 0, 'other')");
    // Its INSERT done, so the cancel has a row to undo.
    await untilSleeping(db.url, h.pid);
    await c.query('SELECT pg_background_cancel($1, $2, 2000)', [h.pid, h.cookie]);
    await c.query('SELECT pg_background_cancel($1, $2)', [h.pid, h.cookie]);
    assert.equal((await c.query('SELECT (pg_background_error_info($1, $2)).sqlstate AS s', [h.pid, h.cookie])).rows[0].s, '57014');
    assert.equal((await c.query("SELECT pg_background_cancel_by_label('batch-%', 2000) AS n")).rows[0].n, 2, 'batch-1 (ended) and batch-2');
    assert.equal((await c.query('SELECT pg_background_cancel_by_label(NULL) AS n')).rows[0].n, 0);
    assert.equal((await c.query('SELECT pg_background_cancel_all() AS n')).rows[0].n, 1, 'only "other" was not canceled yet');
    await c.query('SELECT pg_background_wait(pid, cookie) FROM pg_background_list');
    assert.equal((await c.query('SELECT pg_background_purge() AS n')).rows[0].n, 3);
    assert.equal((await c.query('SELECT pg_background_detach_all() AS n')).rows[0].n, 0);
    // Counted once the backend left the job (a backend still asleep would hold the row uncommitted).
    await untilLeft(db.url, h.pid, 'VALUES (99)');
    assert.equal((await c.query('SELECT count(*)::int AS n FROM t WHERE id = 99')).rows[0].n, 0);
    // batch-1 (canceled twice, counted once), batch-2 and other.
    assert.equal(Number((await c.query('SELECT workers_canceled FROM pg_background_stats()')).rows[0].workers_canceled) - canceledBefore, 3);
  });

  test('cancel terminates a worker that ignores the cancel request once the grace period ends', async () => {
    // A statement that catches query_canceled keeps running: only pg_terminate_backend ends it.
    const stubborn = `DO $$ BEGIN FOR i IN 1..100 LOOP BEGIN PERFORM pg_sleep(0.1); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$`;
    const h = await handleOf(c, `pg_background_launch('${stubborn.replaceAll("'", "''")}')`);
    await untilSleeping(db.url, h.pid);
    await c.query('SELECT pg_background_cancel($1, $2, 300)', [h.pid, h.cookie]);
    assert.equal((await c.query('SELECT pg_background_wait($1, $2, 5000) AS w', [h.pid, h.cookie])).rows[0].w, true);
    // Terminated: the backend is gone (the cancel request alone leaves it looping for 10 s).
    await untilGone(db.url, h.pid);
    await c.query('SELECT pg_background_detach($1, $2)', [h.pid, h.cookie]);
  });

  test('run: one call, the outcome, errors reported not raised, overruns canceled and counted', async () => {
    const ok = (await c.query("SELECT * FROM pg_background_run('INSERT INTO t VALUES (7)', label => 'audit')")).rows[0];
    assert.equal(ok.completed, true);
    assert.equal(ok.has_error, false);
    assert.equal(ok.command_tag, 'INSERT');
    assert.equal(ok.label, 'audit');
    assert.equal(ok.timed_out, false);
    const failed = (await c.query("SELECT * FROM pg_background_run('SELECT 1/0')")).rows[0];
    assert.deepEqual({ has_error: failed.has_error, sqlstate: failed.sqlstate }, { has_error: true, sqlstate: '22012' });
    const before = Number((await c.query('SELECT workers_timed_out FROM pg_background_stats()')).rows[0].workers_timed_out);
    const slow = (await c.query("SELECT * FROM pg_background_run('SELECT pg_sleep(5)', timeout_ms => 100)")).rows[0];
    assert.equal(slow.timed_out, true);
    await c.query('SELECT pg_background_record_timeout()');
    assert.equal(Number((await c.query('SELECT workers_timed_out FROM pg_background_stats()')).rows[0].workers_timed_out), before + 2);
    assert.equal((await c.query('SELECT count(*)::int AS n FROM pg_background_list')).rows[0].n, 0, 'run detaches');
  });

  test('run_query: rows through the caller\'s column list; errors re-raised; overrun 57014 naming the function; only a column list', async () => {
    assert.deepEqual((await c.query("SELECT * FROM pg_background_run_query('SELECT 42 AS n', col_def => 'n int') AS r(n int)")).rows, [{ n: 42 }]);
    assert.deepEqual((await c.query("SELECT * FROM pg_background_run_query_v2('SELECT 42 AS n', col_def => 'n int') AS r(n int)")).rows, [{ n: 42 }]);
    await assert.rejects(c.query("SELECT * FROM pg_background_run_query('SELECT 1/0', col_def => 'x int') AS r(x int)"), { code: '22012' });
    await assert.rejects(c.query("SELECT * FROM pg_background_run_query('SELECT pg_sleep(5)', timeout_ms => 100) AS r(x text)"), {
      code: '57014', message: 'pg_background_run_query: worker did not complete within 100 ms',
    });
    await assert.rejects(c.query("SELECT * FROM pg_background_run_query_v2('SELECT pg_sleep(5)', timeout_ms => 100) AS r(x text)"), {
      message: 'pg_background_run_query_v2: worker did not complete within 100 ms',
    });
    await assert.rejects(c.query("SELECT * FROM pg_background_run_query('SELECT 1', col_def => 'x int) UNION SELECT 1 --') AS r(x int)"), { code: '42601' });
    assert.equal((await c.query('SELECT count(*)::int AS n FROM pg_background_list')).rows[0].n, 0);
  });

  test('progress: report_progress only in a worker; get_progress NULL before a report and for unknown handles', async () => {
    await assert.rejects(c.query('SELECT pg_background_report_progress(1)'), { code: '0A000', message: 'pg_background_report_progress can only be called from a background worker' });
    assert.equal((await c.query('SELECT pg_background_get_progress(1, 1) IS NULL AS n')).rows[0].n, true);
    const h = await handleOf(c, "pg_background_launch($$SELECT pg_background_report_progress(150, 'half'); SELECT pg_sleep(5)$$)");
    let p;
    for (let i = 0; i < 100 && !p; i++) p = (await c.query('SELECT * FROM pg_background_get_progress($1, $2)', [h.pid, h.cookie])).rows.find((r) => r.progress_pct !== null);
    assert.deepEqual(p, { progress_pct: 100, progress_msg: 'half' });
    await c.query('SELECT pg_background_cancel($1, $2)', [h.pid, h.cookie]);
    const n = await handleOf(c, "pg_background_launch('SELECT pg_background_report_progress(NULL)')");
    await c.query('SELECT pg_background_wait($1, $2)', [n.pid, n.cookie]);
    assert.equal((await c.query('SELECT (pg_background_error_info($1, $2)).sqlstate AS s', [n.pid, n.cookie])).rows[0].s, '22004');
    await c.query('SELECT pg_background_detach_all()');
  });

  test('_v2 aliases operate on canonical handles and back', async () => {
    const h = await handleOf(c, "pg_background_launch_v2('SELECT 5')");
    assert.equal((await c.query('SELECT pg_background_wait($1, $2) AS w', [h.pid, h.cookie])).rows[0].w, true);
    assert.deepEqual((await c.query('SELECT * FROM pg_background_result_v2($1, $2) AS (x int)', [h.pid, h.cookie])).rows, [{ x: 5 }]);
    const s = (await c.query('SELECT * FROM pg_background_stats_v2()')).rows[0];
    assert.ok(Number(s.workers_launched) > 0 && s.max_workers === 16);
  });

  test('a role without the owner\'s privileges gets 42501 and does not see the job in the list', async () => {
    const other = await createLoginRole('pgbg_v2other');
    try {
      await withClient(serverUrl(), (s) => s.query(`GRANT CONNECT ON DATABASE ${db.name} TO ${other.name}`));
      assert.equal((await c.query('SELECT pg_background_grant_privileges($1) AS ok', [other.name])).rows[0].ok, true);
      api.logins.set(other.name, urlFor(db.name, other));
      const h = await handleOf(c, "pg_background_launch('SELECT pg_sleep(3)')");
      // The other role calls from the same backend (as SET ROLE does), so it shares the session's handles.
      await c.query(`GRANT ${other.name} TO current_user`).catch(() => undefined);
      await c.query(`SET ROLE ${other.name}`);
      try {
        await assert.rejects(c.query('SELECT pg_background_cancel($1, $2)', [h.pid, h.cookie]), { code: '42501' });
        assert.equal((await c.query('SELECT count(*)::int AS n FROM pg_background_list')).rows[0].n, 0);
        assert.equal((await c.query('SELECT pg_background_detach_all() AS n')).rows[0].n, 0);
      } finally {
        await c.query('RESET ROLE');
      }
      await c.query('SELECT pg_background_cancel($1, $2)', [h.pid, h.cookie]);
      await c.query('SELECT pg_background_detach($1, $2)', [h.pid, h.cookie]);
    } finally {
      await c.query('SELECT pg_background_revoke_privileges($1)', [other.name]);
      await withClient(serverUrl(), (s) => s.query(`REVOKE ALL ON DATABASE ${db.name} FROM ${other.name}; DROP ROLE ${other.name}`));
    }
  });
});

describe('1.8 → 2.0 upgrade with pgbg install', () => {
  test('a 1.8 install with a live session is upgraded in place; handles and roles keep working; no way back', async () => {
    const db = await createTestDatabase();
    const api = await startTestApi(db.url);
    try {
      await withClient(api.callerUrl, async (c) => {
        const before = (await c.query("SELECT pg_background_launch_v2('SELECT 11') AS h")).rows[0].h as string;
        const [pid, cookie] = before.slice(1, -1).split(',');
        const report = await install(c, { endpoint: { host: '127.0.0.1', port: api.server.port }, apiVersion: '2.0' });
        assert.equal(report.apiVersion, '2.0');
        assert.match(report.upgradedFrom ?? '', /^1\.8 /);
        // The same session, the same handle, now through 2.0's names.
        assert.deepEqual((await c.query('SELECT * FROM pg_background_result($1, $2) AS (x int)', [pid, cookie])).rows, [{ x: 11 }]);
        assert.equal((await c.query("SELECT (pg_background_run('SELECT 1')).completed AS ok")).rows[0].ok, true);
        assert.equal((await c.query("SELECT to_regproc('pg_background_wait_v2_timeout') IS NULL AS gone")).rows[0].gone, true);
        assert.equal((await c.query("SELECT to_regtype('pg_background_progress') IS NULL AS gone")).rows[0].gone, true);
        await assert.rejects(install(c, { endpoint: { host: '127.0.0.1', port: api.server.port }, apiVersion: '1.8' }), { code: '0A000' });
      });
    } finally {
      await api.close();
      await db.drop();
    }
  });
});
