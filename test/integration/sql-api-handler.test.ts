/**
 * The SQL API's server side through dblink from a real PostgreSQL: requests
 * bound to the caller's backend by `hello`, each mapped to one engine operation.
 * (The SQL wrappers that send these requests come with the install step.)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Engine } from '../../src/index.js';
import { SqlApiHandler } from '../../src/server/sql-api-handler.js';
import { startWireServer, type WireServer } from '../../src/server/wire.js';
import { createTestDatabase } from '../helpers/db.js';
import { testLogger } from '../helpers/engine.js';

describe('SQL API requests through dblink', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let engine: Engine;
  let handler: SqlApiHandler;
  let server: WireServer;
  let caller: pg.Client;
  const secret = randomBytes(16).toString('hex');
  let connstr: string;

  const call = async <T extends pg.QueryResultRow>(request: object, coldefs: string) =>
    (await caller.query<T>(`SELECT * FROM dblink('pgbg', $1) AS t(${coldefs})`, [JSON.stringify(request)])).rows;

  before(async () => {
    db = await createTestDatabase();
    engine = new Engine({ logger: testLogger() });
    const workerLogin = new URL(db.url);
    handler = new SqlApiHandler(engine, (_database, user) =>
      user === decodeURIComponent(workerLogin.username) ? { connectionString: db.url } : undefined,
    );
    server = await startWireServer({
      handler,
      logger: testLogger(),
      authenticate: (user) => (user === 'pgbg' ? { password: secret } : undefined),
    });
    connstr = `host=127.0.0.1 port=${server.port} user=pgbg password=${secret} dbname=${db.name}`;
    caller = new pg.Client({ connectionString: db.url });
    await caller.connect();
    await caller.query('CREATE EXTENSION dblink');
    await caller.query('CREATE TABLE log (msg text)');
    await caller.query('SELECT dblink_connect($1, $2)', ['pgbg', connstr]);
  });
  after(async () => {
    await caller?.end();
    await server?.close();
    await engine?.close();
    await db?.drop();
  });

  test('a request before hello is refused', async () => {
    await assert.rejects(call({ op: 'list' }, 'pid int'), /before hello/);
  });

  test('hello binds the connection to the caller backend, once', async () => {
    const me = await caller.query("SELECT session_user AS u, pg_backend_pid() AS pid, backend_start::text AS st FROM pg_stat_activity WHERE pid = pg_backend_pid()");
    const hello = { op: 'hello', session_user: me.rows[0].u, backend_pid: me.rows[0].pid, backend_start: me.rows[0].st };
    assert.equal((await caller.query('SELECT dblink_exec($1, $2) AS tag', ['pgbg', JSON.stringify(hello)])).rows[0].tag, 'HELLO');
    await assert.rejects(caller.query('SELECT dblink_exec($1, $2)', ['pgbg', JSON.stringify({ ...hello, session_user: 'someone_else' })]), /already belongs to a caller/);
    assert.equal(handler.sessionCount, 1);
  });

  test('launch, describe and result relay the worker\'s rows with its column types', async () => {
    const [h] = await call<{ pid: number; cookie: string }>({ op: 'launch', sql: "SELECT 42 AS x, 'hi'::text AS y" }, 'pid int4, cookie int8');
    const cols = await call<{ name: string; type_oid: number }>({ op: 'describe', pid: h!.pid, cookie: h!.cookie }, 'position int4, name text, type_oid oid');
    assert.deepEqual(cols.map((c) => [c.name, Number(c.type_oid)]), [['x', 23], ['y', 25]]);
    const rows = await call<{ x: number; y: string }>({ op: 'result', pid: h!.pid, cookie: h!.cookie }, 'x int4, y text');
    assert.deepEqual(rows, [{ x: 42, y: 'hi' }]);
    await assert.rejects(call({ op: 'result', pid: h!.pid, cookie: h!.cookie }, 'x int4, y text'), /already been consumed/);
  });

  test('autonomy: a launch inside a transaction that rolls back still commits', async () => {
    await caller.query('BEGIN');
    const [h] = await call<{ pid: number; cookie: string }>({ op: 'launch', sql: "INSERT INTO log VALUES ('audit')" }, 'pid int4, cookie int8');
    await call({ op: 'wait', pid: h!.pid, cookie: h!.cookie }, 'x text').catch(() => undefined);
    await caller.query('ROLLBACK');
    await caller.query('SELECT dblink_exec($1, $2)', ['pgbg', JSON.stringify({ op: 'wait', pid: h!.pid, cookie: h!.cookie })]);
    assert.equal((await caller.query("SELECT count(*)::int AS n FROM log WHERE msg = 'audit'")).rows[0].n, 1);
  });

  test('worker errors keep their SQLSTATE through dblink; a wrong cookie is 55000', async () => {
    const [h] = await call<{ pid: number; cookie: string }>({ op: 'launch', sql: 'SELECT 1/0' }, 'pid int4, cookie int8');
    const err = await call({ op: 'result', pid: h!.pid, cookie: h!.cookie }, 'x int').then(() => undefined, (e: pg.DatabaseError) => e);
    assert.match(err?.message ?? '', /division by zero/);
    assert.equal(err?.code, '22012');
    const [h2] = await call<{ pid: number; cookie: string }>({ op: 'launch', sql: 'SELECT 1' }, 'pid int4, cookie int8');
    const bad = (BigInt(h2!.cookie) ^ 1n).toString();
    await assert.rejects(call({ op: 'result', pid: h2!.pid, cookie: bad }, 'x int'), /cookie mismatch/);
    await call({ op: 'result', pid: h2!.pid, cookie: h2!.cookie }, 'x int');
  });

  test('list and stats use the caller\'s max_workers', async () => {
    const [h] = await call<{ pid: number; cookie: string }>({ op: 'launch', sql: 'SELECT pg_sleep(0.2)' }, 'pid int4, cookie int8');
    const list = await call<{ pid: number; state: string }>({ op: 'list', max_workers: 7 }, 'pid int4, cookie int8, launched_at timestamptz, user_id oid, queue_size int4, state text, sql_preview text, last_error text, consumed bool');
    assert.ok(list.some((j) => j.pid === h!.pid));
    const [stats] = await call<{ max_workers: number }>({ op: 'stats' }, 'workers_launched int8, workers_completed int8, workers_failed int8, workers_canceled int8, workers_active int4, avg_execution_ms float8, max_workers int4');
    assert.equal(stats!.max_workers, 7);
    await caller.query('SELECT dblink_exec($1, $2)', ['pgbg', JSON.stringify({ op: 'detach', pid: h!.pid, cookie: h!.cookie })]);
  });

  test('no credentials for the caller\'s role: a clear error naming it', async () => {
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    try {
      await other.query('SELECT dblink_connect($1, $2)', ['pgbg', connstr]);
      const hello = { op: 'hello', session_user: 'nobody_here', backend_pid: 1, backend_start: 'x' };
      await assert.rejects(other.query('SELECT dblink_exec($1, $2)', ['pgbg', JSON.stringify(hello)]), /no credentials for role "nobody_here"/);
    } finally {
      await other.end();
    }
  });

  test('when the caller\'s backend ends, its session closes', async () => {
    const before = handler.sessionCount;
    await caller.query("SELECT dblink_disconnect('pgbg')");
    for (let i = 0; i < 50 && handler.sessionCount >= before; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(handler.sessionCount, before - 1);
  });
});
