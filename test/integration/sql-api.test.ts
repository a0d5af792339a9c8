/**
 * pg_background's SQL, unchanged, through the installed wrappers: a real
 * PostgreSQL calls the pgbg server over dblink.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Engine } from '../../src/index.js';
import { install } from '../../src/install/install.js';
import { CARRIED_SETTINGS } from '../../src/sql/carried-settings.js';
import { createLoginRole, createTestDatabase, serverUrl, urlFor, withClient } from '../helpers/db.js';
import { untilGone, untilLeft, untilSleeping } from '../helpers/activity.js';
import { MANAGED, startTestApi, type TestApi } from '../helpers/sql-api.js';

describe('SQL API wrappers', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let api: TestApi;
  let engine: Engine;
  let caller: pg.Client;
  let ops: Map<string, number>;
  let logins: Map<string, string>;
  const endpoint = () => ({ host: '127.0.0.1', port: api.server.port });

  /** A LOGIN role that may connect to the test database and use the API (its own secret, its own worker login). */
  const member = async (prefix: string) => {
    const role = await createLoginRole(prefix);
    await withClient(serverUrl(), (c) => c.query(`GRANT CONNECT ON DATABASE ${db.name} TO ${role.name}`));
    assert.equal((await caller.query('SELECT grant_pg_background_privileges($1) AS ok', [role.name])).rows[0].ok, true);
    logins.set(role.name, urlFor(db.name, role));
    return role;
  };
  const dropRole = async (name: string) => {
    await withClient(api.callerUrl, (c) => c.query('SELECT revoke_pg_background_privileges($1)', [name]));
    await withClient(serverUrl(), async (c) => {
      await c.query(`REVOKE ALL ON DATABASE ${db.name} FROM ${name}`);
      await c.query(`DROP ROLE ${name}`);
    });
  };

  before(async () => {
    db = await createTestDatabase();
    api = await startTestApi(db.url);
    ({ engine, ops, logins } = api);
    caller = new pg.Client({ connectionString: api.callerUrl });
    await caller.connect();
    await caller.query('CREATE TABLE log (msg text)');
  });
  after(async () => {
    await caller?.end();
    await api?.close();
    await db?.drop();
  });

  test('re-running install is a no-op', async () => {
    assert.deepEqual(await install(caller, { endpoint: endpoint() }), { installed: false, schema: 'public', apiVersion: '1.8' });
  });

  test('v1: SELECT * FROM pg_background_result(pg_background_launch(...)) AS (x int)', async () => {
    const r = await caller.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT 42')) AS (x int)");
    assert.deepEqual(r.rows, [{ x: 42 }]);
  });

  test('v2: launch_v2 + result_v2 with several columns and a command tag', async () => {
    const h = (await caller.query("SELECT * FROM pg_background_launch_v2('SELECT 1 AS a, ''b''::text AS b')")).rows[0];
    const r = await caller.query('SELECT * FROM pg_background_result_v2($1, $2) AS (a int, b text)', [h.pid, h.cookie]);
    assert.deepEqual(r.rows, [{ a: 1, b: 'b' }]);
    const t = await caller.query("SELECT * FROM pg_background_result(pg_background_launch('INSERT INTO log VALUES (''x'')')) AS (tag text)");
    assert.deepEqual(t.rows, [{ tag: 'INSERT 0 1' }]);
  });

  test('autonomy: a launch inside a transaction that rolls back still commits', async () => {
    await caller.query('BEGIN');
    let h: { pid: number; cookie: string };
    try {
      h = (await caller.query("SELECT * FROM pg_background_launch_v2('INSERT INTO log VALUES (''audit'')')")).rows[0];
      await caller.query('SELECT pg_background_wait_v2($1, $2)', [h.pid, h.cookie]);
    } finally {
      await caller.query('ROLLBACK');
    }
    assert.equal((await caller.query("SELECT count(*)::int AS n FROM log WHERE msg = 'audit'")).rows[0].n, 1);
    // RETURNS void functions return a void value, not NULL (as the C extension's).
    assert.equal((await caller.query('SELECT pg_background_detach_v2($1, $2) IS NULL AS n', [h.pid, h.cookie])).rows[0].n, false);
  });

  test('a column list that does not match the worker\'s types is 42804', async () => {
    await assert.rejects(
      caller.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT 1::int')) AS (x text)"),
      { code: '42804', message: 'remote query result rowtype does not match the specified FROM clause rowtype' },
    );
  });

  test('worker errors and handle errors keep their SQLSTATE', async () => {
    await assert.rejects(caller.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT 1/0')) AS (x int)"), { code: '22012' });
    await assert.rejects(caller.query('SELECT * FROM pg_background_result(12345) AS (x int)'), { code: '42704' });
    await assert.rejects(caller.query("SELECT pg_background_launch('COMMIT')"), { code: '0A000' });
  });

  test('errors look as the C extension\'s: SQLSTATE, message, detail and hint, no dblink CONTEXT or wrapper SQL', async () => {
    const clean = (sql: string, params: unknown[], code: string, fields: { detail?: string; hint?: string } = {}) =>
      assert.rejects(caller.query(sql, params), (err: pg.DatabaseError) => {
        assert.equal(err.code, code, err.message);
        assert.equal(err.detail, fields.detail);
        assert.equal(err.hint, fields.hint);
        // What is left is the line of the wrapper the caller called (PL/pgSQL adds it to any RAISE).
        assert.doesNotMatch(err.where ?? '', /dblink|pgbg_\d|SQL statement/, err.where);
        return true;
      });
    const failing = "DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = '22023', DETAIL = 'the detail', HINT = 'the hint'; END $$";
    // Through each way a wrapper reaches the server: a result, a command (detach), a row answer, a launch.
    await clean('SELECT * FROM pg_background_result(pg_background_launch($1)) AS (x text)', [failing], '22023', { detail: 'the detail', hint: 'the hint' });
    const h = (await caller.query('SELECT * FROM pg_background_launch_v2($1)', [failing])).rows[0];
    await clean('SELECT * FROM pg_background_result_v2($1, $2) AS (x text)', [h.pid, h.cookie], '22023', { detail: 'the detail', hint: 'the hint' });
    const ok = (await caller.query("SELECT * FROM pg_background_launch_v2('SELECT 1')")).rows[0];
    await clean('SELECT pg_background_detach_v2($1, $2)', [ok.pid, String(BigInt(ok.cookie) + 1n)], '55000', { hint: 'The worker may have been restarted or the handle is stale.' });
    await caller.query('SELECT pg_background_detach_v2($1, $2)', [ok.pid, ok.cookie]);
    await clean('SELECT pg_background_wait_v2_timeout($1, $2, 10)', [999999, 1], '42704');
    await clean("SELECT pg_background_launch('SELECT 1', 1)", [], '22023');
    // A wait given up by statement_timeout.
    const slow = (await caller.query("SELECT * FROM pg_background_launch_v2('SELECT pg_sleep(2)')")).rows[0];
    await caller.query("SET statement_timeout = '200ms'");
    try {
      await clean('SELECT * FROM pg_background_result_v2($1, $2) AS (x text)', [slow.pid, slow.cookie], '57014');
    } finally {
      await caller.query('RESET statement_timeout');
    }
    await caller.query('SELECT pg_background_detach_v2($1, $2)', [slow.pid, slow.cookie]);
  });

  const LIST_V2 = 'pg_background_list_v2() AS (pid int4, cookie int8, launched_at timestamptz, user_id oid, queue_size int4, state text, sql_preview text, last_error text, consumed bool)';

  test('cancel_v2: nothing of the job commits', async () => {
    const h = (await caller.query("SELECT * FROM pg_background_launch_v2('INSERT INTO log VALUES (''c''); SELECT pg_sleep(30)')")).rows[0];
    // Asleep, so its INSERT is done and the cancel has something to undo.
    await untilSleeping(db.url, h.pid);
    await caller.query('SELECT pg_background_cancel_v2_grace($1, $2, 2000)', [h.pid, h.cookie]);
    // Counted once the backend left the job: while it still slept, its row would be uncommitted anyway.
    await untilLeft(db.url, h.pid, "VALUES ('c')");
    assert.equal((await caller.query("SELECT count(*)::int AS n FROM log WHERE msg = 'c'")).rows[0].n, 0);
    const listed = await caller.query(`SELECT state, last_error FROM ${LIST_V2} WHERE cookie = $1`, [h.cookie]);
    assert.deepEqual(listed.rows, [{ state: 'stopped', last_error: `background worker with PID ${h.pid} was canceled` }]);
    await caller.query('SELECT pg_background_detach_v2($1, $2)', [h.pid, h.cookie]);
  });

  test('cancel_v2 after the job committed: list_v2 says stopped with no error, and the row stays', async () => {
    const h = (await caller.query("SELECT * FROM pg_background_launch_v2('INSERT INTO log VALUES (''kept'')')")).rows[0];
    await caller.query('SELECT pg_background_wait_v2($1, $2)', [h.pid, h.cookie]);
    await caller.query('SELECT pg_background_cancel_v2_grace($1, $2, 1000)', [h.pid, h.cookie]);
    const listed = await caller.query(`SELECT state, last_error FROM ${LIST_V2} WHERE cookie = $1`, [h.cookie]);
    assert.deepEqual(listed.rows, [{ state: 'stopped', last_error: null }]);
    assert.deepEqual((await caller.query('SELECT * FROM pg_background_result_v2($1, $2) AS (tag text)', [h.pid, h.cookie])).rows, [{ tag: 'INSERT 0 1' }]);
    assert.equal((await caller.query("SELECT count(*)::int AS n FROM log WHERE msg = 'kept'")).rows[0].n, 1);
  });

  test('a worker backend terminated mid-job by someone else: the caller gets 08006 naming its pid', async () => {
    const h = (await caller.query("SELECT * FROM pg_background_launch_v2('INSERT INTO log VALUES (''lost''); SELECT pg_sleep(30)')")).rows[0];
    await untilSleeping(db.url, h.pid);
    await withClient(db.url, (c) => c.query('SELECT pg_terminate_backend($1)', [h.pid]));
    await assert.rejects(caller.query('SELECT * FROM pg_background_result_v2($1, $2) AS (x text)', [h.pid, h.cookie]), {
      code: '08006', message: `lost connection to worker process with PID ${h.pid}`, detail: 'terminating connection due to administrator command',
    });
    await untilGone(db.url, h.pid);
    assert.equal((await caller.query("SELECT count(*)::int AS n FROM log WHERE msg = 'lost'")).rows[0].n, 0);
  });

  test('another backend\'s handle is 42704 here, for the same role too; its own backend still reads it', async () => {
    const h = (await caller.query("SELECT * FROM pg_background_launch_v2('SELECT 8')")).rows[0];
    await withClient(api.callerUrl, async (c) => {
      for (const call of [
        'SELECT * FROM pg_background_result_v2($1, $2) AS (x int)', 'SELECT pg_background_wait_v2($1, $2)', 'SELECT pg_background_wait_v2_timeout($1, $2, 10)',
        'SELECT pg_background_cancel_v2($1, $2)', 'SELECT pg_background_detach_v2($1, $2)',
      ]) {
        await assert.rejects(c.query(call, [h.pid, h.cookie]), (err: pg.DatabaseError) => {
          assert.equal(err.code, '42704', `${call}: ${err.message}`);
          assert.equal(err.message, `PID ${h.pid} is not attached to this session`, call);
          return true;
        });
      }
      assert.deepEqual((await c.query(`SELECT pid FROM ${LIST_V2}`)).rows, []);
    });
    assert.deepEqual((await caller.query('SELECT * FROM pg_background_result_v2($1, $2) AS (x int)', [h.pid, h.cookie])).rows, [{ x: 8 }]);
  });

  test('list_v2 shows only the jobs the current role has the privileges of', async () => {
    const other = await member('pgbg_lister');
    const h = (await caller.query("SELECT * FROM pg_background_launch_v2('SELECT 9')")).rows[0];
    try {
      const listed = async () => (await caller.query(`SELECT pid FROM ${LIST_V2} WHERE cookie = $1`, [h.cookie])).rows;
      assert.deepEqual(await listed(), [{ pid: h.pid }]);
      // The same backend (its handles), under a role without the launcher's privileges.
      await caller.query(`GRANT ${other.name} TO current_user`);
      await caller.query(`SET ROLE ${other.name}`);
      try {
        assert.deepEqual(await listed(), []);
      } finally {
        await caller.query('RESET ROLE');
      }
      assert.deepEqual(await listed(), [{ pid: h.pid }]);
      assert.deepEqual((await caller.query('SELECT * FROM pg_background_result_v2($1, $2) AS (x int)', [h.pid, h.cookie])).rows, [{ x: 9 }]);
    } finally {
      await dropRole(other.name);
    }
  });

  test('the rest of the error table: each with the spec\'s SQLSTATE and message', async () => {
    const expect = (sql: string, params: unknown[], code: string, message: RegExp, hint?: RegExp) =>
      assert.rejects(caller.query(sql, params), (err: pg.DatabaseError) => {
        assert.equal(err.code, code, err.message);
        assert.match(err.message, message);
        if (hint) assert.match(err.hint ?? '', hint);
        return true;
      });
    // submit_v2: fire and forget; its results are disabled.
    const sub = (await caller.query("SELECT * FROM pg_background_submit_v2('INSERT INTO log VALUES (''submitted'')')")).rows[0];
    await caller.query('SELECT pg_background_wait_v2($1, $2)', [sub.pid, sub.cookie]);
    assert.equal((await caller.query("SELECT count(*)::int AS n FROM log WHERE msg = 'submitted'")).rows[0].n, 1);
    await expect('SELECT * FROM pg_background_result_v2($1, $2) AS (t text)', [sub.pid, sub.cookie], '0A000', /results are disabled for PID \d+ \(submitted via submit_v2\)/);
    // cancel_v2 (no grace): the job is canceled, nothing commits.
    const h = (await caller.query("SELECT * FROM pg_background_launch_v2('INSERT INTO log VALUES (''cancel-now''); SELECT pg_sleep(30)')")).rows[0];
    await untilSleeping(db.url, h.pid);
    await caller.query('SELECT pg_background_cancel_v2($1, $2)', [h.pid, h.cookie]);
    const listed = await caller.query(`SELECT state, last_error FROM ${LIST_V2} WHERE cookie = $1`, [h.cookie]);
    // list_v2 says `stopped` for a canceled or failed worker, as the C extension does (its error in last_error).
    assert.deepEqual(listed.rows, [{ state: 'stopped', last_error: `background worker with PID ${h.pid} was canceled` }]);
    // Terminated (no grace): the backend exits, its INSERT rolled back.
    await untilGone(db.url, h.pid);
    assert.equal((await caller.query("SELECT count(*)::int AS n FROM log WHERE msg = 'cancel-now'")).rows[0].n, 0);
    // A stale cookie, results read twice.
    const done = (await caller.query("SELECT * FROM pg_background_launch_v2('SELECT 1')")).rows[0];
    await expect('SELECT * FROM pg_background_result_v2($1, $2) AS (x int)', [done.pid, String(BigInt(done.cookie) + 1n)], '55000', /cookie mismatch for PID \d+/, /stale/);
    await caller.query('SELECT * FROM pg_background_result_v2($1, $2) AS (x int)', [done.pid, done.cookie]);
    await expect('SELECT * FROM pg_background_result_v2($1, $2) AS (x int)', [done.pid, done.cookie], '42704', /results for PID \d+ have already been consumed/);
    // Limits and input checks.
    await expect("SELECT pg_background_launch('SELECT 1', 1)", [], '22023', /queue size must be at least 64 bytes/);
    // As with the C extension: 64 bytes is a queue, and a row larger than the queue still gets through.
    const tiny = await caller.query("SELECT length(x) AS n FROM pg_background_result(pg_background_launch('SELECT repeat(''x'', 10000)', 100)) AS (x text)");
    assert.deepEqual(tiny.rows, [{ n: 10000 }]);
    await expect("SELECT pg_background_launch('COPY log FROM STDIN')", [], '0A000', /COPY protocol not allowed in pg_background/);
    await expect("SELECT pg_background_launch('SELECT 1; ROLLBACK')", [], '0A000', /transaction control statements are not allowed in pg_background/);
    for (const row of [sub, h]) await caller.query('SELECT pg_background_detach_v2($1, $2)', [row.pid, row.cookie]);
    // Earlier tests may have left handles in this session: allow exactly one more.
    const tracked = (await caller.query(`SELECT count(*)::int AS n FROM ${LIST_V2} WHERE NOT consumed`)).rows[0].n;
    await caller.query(`SET pg_background.max_workers = ${tracked + 1}`);
    try {
      const first = (await caller.query("SELECT * FROM pg_background_launch_v2('SELECT 1')")).rows[0];
      await expect("SELECT pg_background_launch('SELECT 2')", [], '53400', /too many background workers/, /pg_background\.max_workers/);
      await caller.query('SELECT pg_background_detach_v2($1, $2)', [first.pid, first.cookie]);
    } finally {
      await caller.query('RESET pg_background.max_workers');
    }
  });

  test('pg_background_drop_executor_role: not for PUBLIC; refused while the role still holds grants', async () => {
    const outsider = await createLoginRole('pgbg_drop');
    await withClient(serverUrl(), (c) => c.query(`GRANT CONNECT ON DATABASE ${db.name} TO ${outsider.name}`));
    try {
      await withClient(urlFor(db.name, outsider), async (c) => {
        await assert.rejects(c.query('SELECT pg_background_drop_executor_role()'), { code: '42501' });
      });
      await assert.rejects(caller.query('SELECT pg_background_drop_executor_role()'), { code: '2BP01' });
      assert.equal((await caller.query("SELECT count(*)::int AS n FROM pg_roles WHERE rolname = 'pgbackground_role'")).rows[0].n, 1);
    } finally {
      await withClient(serverUrl(), async (c) => {
        await c.query(`REVOKE ALL ON DATABASE ${db.name} FROM ${outsider.name}`);
        await c.query(`DROP ROLE ${outsider.name}`);
      });
    }
  });

  test('no PUBLIC access: a role outside pgbackground_role is refused; a member can launch and runs as itself', async () => {
    const outsider = await createLoginRole('pgbg_out');
    await withClient(serverUrl(), (c) => c.query(`GRANT CONNECT ON DATABASE ${db.name} TO ${outsider.name}`));
    const inside = await member('pgbg_in');
    let other: { name: string } | undefined;
    try {
      await withClient(urlFor(db.name, outsider), async (c) => {
        await assert.rejects(c.query("SELECT pg_background_launch('SELECT 1')"), { code: '42501' });
        await assert.rejects(c.query("SELECT pgbg_private.request('{}')"), { code: '42501' });
        await assert.rejects(c.query('SELECT * FROM pgbg_private.role_keys'), { code: '42501' });
      });
      await withClient(urlFor(db.name, inside), async (c) => {
        const r = await c.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT current_user::text, session_user::text')) AS (who text, login text)");
        assert.deepEqual(r.rows, [{ who: inside.name, login: inside.name }]);
      });
      // A handle launched under a role the caller's current role lacks the privileges of: 42501.
      other = await member('pgbg_other');
      await withClient(serverUrl(), (c) => c.query(`GRANT ${other!.name} TO ${inside.name}`));
      await withClient(urlFor(db.name, inside), async (c) => {
        const h = (await c.query("SELECT * FROM pg_background_launch_v2('SELECT 1')")).rows[0];
        await c.query(`SET ROLE ${other!.name}`);
        await assert.rejects(c.query('SELECT * FROM pg_background_result_v2($1, $2) AS (x int)', [h.pid, h.cookie]), {
          code: '42501', message: `permission denied for background worker with PID "${h.pid}"`,
        });
        await c.query('RESET ROLE');
        assert.deepEqual((await c.query('SELECT * FROM pg_background_result_v2($1, $2) AS (x int)', [h.pid, h.cookie])).rows, [{ x: 1 }]);
        // The other way round: launched as the other role (which runs as itself, logged in as
        // itself), read back as the member, which has its privileges: allowed.
        await c.query(`SET ROLE ${other!.name}`);
        const h2 = (await c.query("SELECT * FROM pg_background_launch_v2('SELECT current_user::text, session_user::text')")).rows[0];
        await c.query('RESET ROLE');
        assert.deepEqual((await c.query('SELECT * FROM pg_background_result_v2($1, $2) AS (who text, login text)', [h2.pid, h2.cookie])).rows,
          [{ who: other!.name, login: other!.name }]);
      });
    } finally {
      await withClient(serverUrl(), async (c) => {
        if (other) await c.query(`REVOKE ${other.name} FROM ${inside.name}`);
        await c.query(`REVOKE ALL ON DATABASE ${db.name} FROM ${outsider.name}`);
        await c.query(`DROP ROLE ${outsider.name}`);
      });
      if (other) await dropRole(other.name);
      await dropRole(inside.name);
    }
  });

  test('SHOW answers the defaults in a fresh session (unset where a non-superuser installed); list_v2, stats_v2 and wait_v2_timeout', async () => {
    await withClient(api.callerUrl, async (c) => {
      const setting = async (name: string) => (await c.query('SELECT current_setting($1, true) AS v', [name])).rows[0].v;
      // Storing a default for a setting PostgreSQL does not know takes a superuser: without one the
      // settings stay unset and the API uses the defaults (stats_v2 below still says 16).
      assert.equal(await setting('pg_background.max_workers'), MANAGED ? null : '16');
      assert.equal(await setting('pg_background.default_queue_size'), MANAGED ? null : '64kB');
      assert.equal((await c.query('SELECT max_workers FROM pg_background_stats_v2()')).rows[0].max_workers, 16);
      const h = (await c.query("SELECT * FROM pg_background_launch_v2('SELECT pg_sleep(0.3)')")).rows[0];
      assert.equal((await c.query('SELECT pg_background_wait_v2_timeout($1, $2, 10) AS f', [h.pid, h.cookie])).rows[0].f, false);
      const list = await c.query('SELECT * FROM pg_background_list_v2() AS (pid int4, cookie int8, launched_at timestamptz, user_id oid, queue_size int4, state text, sql_preview text, last_error text, consumed bool)');
      assert.deepEqual(list.rows.map((r) => [r.pid, r.cookie, r.state, r.sql_preview, r.queue_size]), [[h.pid, h.cookie, 'running', 'SELECT pg_sleep(0.3)', 65536]]);
      assert.equal((await c.query('SELECT pg_background_wait_v2_timeout($1, $2, 10000) AS f', [h.pid, h.cookie])).rows[0].f, true);
      await c.query('SET pg_background.max_workers = 5');
      const stats = (await c.query('SELECT * FROM pg_background_stats_v2()')).rows[0];
      assert.equal(stats.max_workers, 5);
      assert.equal(stats.workers_launched, '1');
    });
  });

  test('pg_background.worker_timeout cancels a long job', async () => {
    await caller.query("SET pg_background.worker_timeout = '200ms'");
    try {
      await assert.rejects(caller.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT pg_sleep(30)')) AS (x text)"), { code: '57014' });
    } finally {
      await caller.query('RESET pg_background.worker_timeout');
    }
  });

  test('a wait cut short by statement_timeout does not hold up the next request; the job runs on', async () => {
    const h = (await caller.query("SELECT * FROM pg_background_launch_v2('SELECT pg_sleep(20)')")).rows[0];
    try {
      await caller.query("SET statement_timeout = '200ms'");
      await assert.rejects(caller.query('SELECT pg_background_wait_v2($1, $2)', [h.pid, h.cookie]), { code: '57014' });
      // Before 0013 wait_v2_timeout kept waiting out its own timeout (here 20 s) whatever statement_timeout said.
      await assert.rejects(caller.query('SELECT pg_background_wait_v2_timeout($1, $2, 20000)', [h.pid, h.cookie]), { code: '57014' });
      await caller.query('RESET statement_timeout');
      // Before 0011 this request waited for the canceled wait's answer (the job's end) and then failed.
      const r = await caller.query('SELECT pg_background_wait_v2_timeout($1, $2, 0) AS finished', [h.pid, h.cookie]);
      assert.equal(r.rows[0].finished, false, 'answered while the job still runs');
      const listed = await caller.query(`SELECT state FROM pg_background_list_v2() AS (pid int4, cookie int8, launched_at timestamptz,
        user_id oid, queue_size int4, state text, sql_preview text, last_error text, consumed bool) WHERE pid = $1`, [h.pid]);
      assert.deepEqual(listed.rows, [{ state: 'running' }]);
    } finally {
      await caller.query('RESET statement_timeout');
      await caller.query('SELECT pg_background_cancel_v2($1, $2)', [h.pid, h.cookie]);
    }
  });

  test('a call given up before its answer came, then answered before the next call: the next call works', async () => {
    const calls: [string, string][] = [['SELECT pg_background_wait_v2($1, $2)', ''], ['SELECT * FROM pg_background_result_v2($1, $2)', ' AS (x text)']];
    for (const [call, columns] of calls) {
      const h = (await caller.query("SELECT * FROM pg_background_launch_v2('SELECT pg_sleep(0.6)::text')")).rows[0];
      await caller.query("SET statement_timeout = '100ms'");
      await assert.rejects(caller.query(call + columns, [h.pid, h.cookie]), { code: '57014' });
      await caller.query('RESET statement_timeout');
      // The job ends and the abandoned request is answered while nobody reads the connection.
      assert.ok(await engine.drain(10_000), 'the job ended');
      const r = await caller.query('SELECT * FROM pg_background_stats_v2()');
      assert.equal(r.rows.length, 1, call);
      await caller.query('SELECT pg_background_detach_v2($1, $2)', [h.pid, h.cookie]).catch(() => undefined);
    }
  });

  test('a result waiting for its rows gives way to statement_timeout; errors leave the connection ready', async () => {
    const h = (await caller.query("SELECT * FROM pg_background_launch_v2('SELECT pg_sleep(20)::text, 1')")).rows[0];
    try {
      await caller.query("SET statement_timeout = '200ms'");
      // Before 0012 the wrapper kept waiting for the rows (the job's 20 s), whatever the timeout.
      await assert.rejects(caller.query('SELECT * FROM pg_background_result_v2($1, $2) AS (a text, b int)', [h.pid, h.cookie]), { code: '57014' });
      await caller.query('RESET statement_timeout');
      const r = await caller.query('SELECT pg_background_wait_v2_timeout($1, $2, 0) AS finished', [h.pid, h.cookie]);
      assert.equal(r.rows[0].finished, false, 'the next call is answered while the job still runs');
    } finally {
      await caller.query('RESET statement_timeout');
      await caller.query('SELECT pg_background_cancel_v2($1, $2)', [h.pid, h.cookie]);
    }
    // A mismatched column list and a worker error each leave nothing unread behind them.
    await assert.rejects(caller.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT 1::int')) AS (x text)"), { code: '42804' });
    await assert.rejects(caller.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT 1/0')) AS (x int)"), { code: '22012' });
    const ok = await caller.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT 42')) AS (x int)");
    assert.deepEqual(ok.rows, [{ x: 42 }]);
  });

  test('waiting on your own worker while holding the lock it needs is 40P01, not a hang', async () => {
    await caller.query('BEGIN');
    try {
      await caller.query('LOCK TABLE log IN ACCESS EXCLUSIVE MODE');
      const pid = (await caller.query("SELECT pg_background_launch('INSERT INTO log VALUES (''locked'')') AS pid")).rows[0].pid;
      await assert.rejects(caller.query('SELECT * FROM pg_background_result($1) AS (tag text)', [pid]), { code: '40P01' });
    } finally {
      await caller.query('ROLLBACK');
    }
  });

  test('pg_background_progress from the worker is read by get_progress_v2 while it runs; outside a worker it is 0A000', async () => {
    await assert.rejects(caller.query('SELECT pg_background_progress(10)'), {
      code: '0A000', message: 'pg_background_progress can only be called from a background worker',
    });
    await caller.query('SET client_min_messages = error'); // copied to the worker; the progress notice must still get through
    try {
      const h = (await caller.query("SELECT * FROM pg_background_launch_v2('SELECT pg_background_progress(150, ''almost''); SELECT pg_sleep(1)')")).rows[0];
      const before = (await caller.query('SELECT * FROM pg_background_get_progress_v2($1, $2)', [h.pid, h.cookie])).rows[0];
      let p = before;
      for (let i = 0; i < 40 && p.progress_pct === null; i++) {
        await new Promise((r) => setTimeout(r, 25));
        p = (await caller.query('SELECT * FROM pg_background_get_progress_v2($1, $2)', [h.pid, h.cookie])).rows[0];
      }
      assert.deepEqual(p, { progress_pct: 100, progress_msg: 'almost' });
      await caller.query('SELECT pg_background_detach_v2($1, $2)', [h.pid, h.cookie]);
    } finally {
      await caller.query('RESET client_min_messages');
    }
  });

  test('grant helpers quote identifiers: injection attempts fail harmlessly', async () => {
    const notices: string[] = [];
    const onNotice = (n: { message?: string }) => notices.push(n.message ?? '');
    caller.on('notice', onNotice);
    try {
      const r = await caller.query(`SELECT grant_pg_background_privileges('x; DROP TABLE log; --', true) AS ok`);
      assert.equal(r.rows[0].ok, false);
      assert.ok(notices.some((m) => /Error granting pg_background privileges/.test(m)));
      assert.equal((await caller.query("SELECT to_regclass('log') IS NOT NULL AS here")).rows[0].here, true);
      const role = await createLoginRole('pgbg_grant');
      try {
        assert.equal((await caller.query('SELECT grant_pg_background_privileges($1, true) AS ok', [role.name])).rows[0].ok, true);
        assert.ok(notices.includes(`GRANT pgbackground_role TO ${role.name}`));
        assert.equal((await caller.query("SELECT pg_has_role($1, 'pgbackground_role', 'MEMBER') AS m", [role.name])).rows[0].m, true);
        assert.equal((await caller.query('SELECT revoke_pg_background_privileges($1) AS ok', [role.name])).rows[0].ok, true);
        assert.equal((await caller.query("SELECT pg_has_role($1, 'pgbackground_role', 'MEMBER') AS m", [role.name])).rows[0].m, false);
      } finally {
        await withClient(serverUrl(), (c) => c.query(`DROP ROLE ${role.name}`));
      }
    } finally {
      caller.off('notice', onNotice);
    }
  });

  test('worker notices and warnings reach the caller with their detail', async () => {
    const seen: { message?: string; severity?: string; detail?: string }[] = [];
    const onNotice = (n: { message?: string; severity?: string; detail?: string }) => seen.push(n);
    caller.on('notice', onNotice);
    try {
      const sql = "DO $$ BEGIN RAISE NOTICE 'from the worker' USING DETAIL = 'd1'; RAISE WARNING 'careful'; END $$";
      const r = await caller.query('SELECT * FROM pg_background_result(pg_background_launch($1)) AS (tag text)', [sql]);
      assert.deepEqual(r.rows, [{ tag: 'DO' }]);
      assert.ok(seen.some((n) => n.message === 'from the worker' && n.detail === 'd1' && n.severity === 'NOTICE'));
      // No empty DETAIL or HINT where the worker's notice had none (psql would print `DETAIL:` alone).
      assert.ok(seen.some((n) => n.message === 'careful' && n.severity === 'WARNING' && n.detail === undefined));
    } finally {
      caller.off('notice', onNotice);
    }
  });

  test('wait_v2 re-raises the worker\'s notices; the later result does not repeat them', async () => {
    const seen: string[] = [];
    const onNotice = (n: { message?: string }) => seen.push(n.message ?? '');
    caller.on('notice', onNotice);
    try {
      const h = (await caller.query("SELECT * FROM pg_background_launch_v2($1)", ["DO $$ BEGIN RAISE NOTICE 'waited on'; END $$"])).rows[0];
      await caller.query('SELECT pg_background_wait_v2($1, $2)', [h.pid, h.cookie]);
      assert.deepEqual(seen, ['waited on']);
      const r = await caller.query('SELECT * FROM pg_background_result_v2($1, $2) AS (tag text)', [h.pid, h.cookie]);
      assert.deepEqual(r.rows, [{ tag: 'DO' }]);
      assert.deepEqual(seen, ['waited on']);
    } finally {
      caller.off('notice', onNotice);
    }
  });

  test('workers run in the caller\'s database, whatever the stored connection string names', async () => {
    const r = await caller.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT current_database()')) AS (d name)");
    assert.deepEqual(r.rows, [{ d: db.name }]);
  });

  test('a result is one request (columns and rows together); a job that ended without notices costs no notices request', async () => {
    const run = async (sql: string) => {
      const h = (await caller.query('SELECT * FROM pg_background_launch_v2($1)', [sql])).rows[0];
      // wait_v2_timeout, unlike wait_v2, raises no notices: the job has ended before the result is read.
      assert.equal((await caller.query('SELECT pg_background_wait_v2_timeout($1, $2, 10000) AS done', [h.pid, h.cookie])).rows[0].done, true);
      ops.clear();
      await caller.query('SELECT * FROM pg_background_result_v2($1, $2) AS (t text)', [h.pid, h.cookie]);
      return Object.fromEntries(ops);
    };
    assert.deepEqual(await run('SELECT 1::text'), { describe_result: 1 });
    assert.deepEqual(await run("DO $$ BEGIN RAISE NOTICE 'hi'; END $$"), { describe_result: 1, notices: 1 });
    // Many rows (here ~1 MB, over the 256 kB that come along) stream through a request of their own.
    const h = (await caller.query("SELECT * FROM pg_background_launch_v2('SELECT g, md5(g::text) FROM generate_series(1, 20000) g')")).rows[0];
    ops.clear();
    const big = await caller.query('SELECT count(*)::int AS n, sum(g)::int8 AS s FROM pg_background_result_v2($1, $2) AS (g int, m text)', [h.pid, h.cookie]);
    assert.deepEqual(big.rows, [{ n: 20000, s: '200010000' }]);
    // Its columns went out while it still ran (its queue full), so its notices are asked for after the rows.
    assert.deepEqual(Object.fromEntries(ops), { describe_result: 1, result: 1, notices: 1 });
  });

  test('from DO blocks and triggers: the autonomous audit row survives the rollback', async () => {
    await caller.query(`CREATE TABLE orders (id int);
      CREATE FUNCTION audit_order() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_background_detach(pg_background_launch(format('INSERT INTO log VALUES (%L)', 'order ' || NEW.id))); RETURN NEW; END $$;
      CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION audit_order();`);
    await caller.query('BEGIN');
    try {
      await caller.query('INSERT INTO orders VALUES (7)');
      await caller.query(`DO $$ BEGIN PERFORM pg_background_detach(pg_background_launch('INSERT INTO log VALUES (''from do'')')); END $$`);
    } finally {
      await caller.query('ROLLBACK');
    }
    assert.ok(await engine.drain(10_000));
    const r = await caller.query("SELECT msg FROM log WHERE msg IN ('order 7', 'from do') ORDER BY msg");
    assert.deepEqual(r.rows.map((x) => x.msg), ['from do', 'order 7']);
    assert.equal((await caller.query('SELECT count(*)::int AS n FROM orders')).rows[0].n, 0);
  });

  test('NOTIFY from a detached worker is delivered when it commits', async () => {
    const listener = new pg.Client({ connectionString: api.callerUrl });
    await listener.connect();
    try {
      await listener.query('LISTEN pgbg_done');
      const got = new Promise<string | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), 10_000);
        listener.once('notification', (n) => {
          clearTimeout(timer);
          resolve(n.payload);
        });
      });
      await caller.query("SELECT pg_background_detach(pg_background_launch('SELECT pg_sleep(0.2); NOTIFY pgbg_done, ''finished'''))");
      assert.equal(await got, 'finished');
    } finally {
      await listener.end();
    }
  });

  test('the caller\'s settings read in one expression equal the general form', async () => {
    await caller.query("SET TimeZone = 'Asia/Tokyo'; SET work_mem = '48MB'; SET enable_seqscan = off");
    try {
      const general = await caller.query(`SELECT pg_catalog.json_object_agg(n, v)::jsonb AS s FROM (
        SELECT n, pg_catalog.current_setting(n, true) AS v FROM pg_catalog.unnest($1::text[]) AS n) x
        WHERE v IS NOT NULL`, [CARRIED_SETTINGS]);
      const fast = await caller.query('SELECT pgbg_private.caller_settings()::jsonb AS s');
      assert.deepEqual(fast.rows[0].s, general.rows[0].s);
      assert.equal(fast.rows[0].s.TimeZone, 'Asia/Tokyo');
      assert.equal(fast.rows[0].s.work_mem, '48MB');
      // A name this PostgreSQL lacks (force_parallel_mode went in 16, debug_parallel_query came) is left out, not null.
      assert.ok(Object.values(fast.rows[0].s).every((v) => typeof v === 'string'));
    } finally {
      await caller.query('RESET TimeZone; RESET work_mem; RESET enable_seqscan');
    }
  });

  test('the worker runs with the caller\'s settings', async () => {
    await caller.query("SET TimeZone = 'Asia/Tokyo'; SET work_mem = '48MB'; SET enable_seqscan = off");
    const sql = "SELECT current_setting('TimeZone'), current_setting('work_mem'), current_setting('enable_seqscan'), current_setting('DateStyle')";
    const r = await caller.query('SELECT * FROM pg_background_result(pg_background_launch($1)) AS (tz text, wm text, seq text, ds text)', [sql]);
    assert.deepEqual(r.rows, [{ tz: 'Asia/Tokyo', wm: '48MB', seq: 'off', ds: 'ISO, MDY' }]);
    await caller.query('RESET TimeZone; RESET work_mem; RESET enable_seqscan');
    // Application settings travel when named in pgbg.carry_settings; a duplicate name or a missing one does no harm.
    const tenant = "SELECT * FROM pg_background_result(pg_background_launch('SELECT current_setting(''myapp.tenant'', true)')) AS (t text)";
    await caller.query("SET myapp.tenant = 't42'");
    assert.deepEqual((await caller.query(tenant)).rows, [{ t: null }], 'not carried unless named');
    await caller.query("SET pgbg.carry_settings = 'myapp.tenant, myapp.absent,TimeZone'");
    assert.deepEqual((await caller.query(tenant)).rows, [{ t: 't42' }]);
    await caller.query('RESET pgbg.carry_settings; RESET myapp.tenant');
  });
});
