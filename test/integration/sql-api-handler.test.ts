/**
 * The SQL API's server side through dblink from a real PostgreSQL, requests
 * made by hand: each proves its role (a proof from the role's own secret, bound
 * to the connection's nonce, used once), `hello` binds the connection to the
 * caller's backend, and each request maps to one engine operation.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { helloApplicationName, signRequest } from '../../src/server/request-proof.js';
import { createTestDatabase } from '../helpers/db.js';
import { startTestApi, type TestApi } from '../helpers/sql-api.js';

/** The calling role's own secret, as the SQL API reads it (pg_user_mappings shows it to that role only). */
export const OWN_SECRET_SQL = `SELECT substr(o, 10) AS secret FROM pg_catalog.pg_user_mappings m, unnest(m.umoptions) o
  WHERE m.srvname = 'pgbg' AND m.usename = current_user AND o LIKE 'password=%'`;

describe('SQL API requests through dblink', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let api: TestApi;
  let caller: pg.Client;
  let secret: string;
  const nonce = randomBytes(16).toString('hex');
  let seq = BigInt(Date.now()) * 1000n;

  const signed = (request: object, s = secret, n = nonce) => signRequest(s, n, ++seq, JSON.stringify(request));
  const call = async <T extends pg.QueryResultRow>(request: object, coldefs: string) =>
    (await caller.query<T>(`SELECT * FROM dblink('hand', $1) AS t(${coldefs})`, [signed(request)])).rows;
  const exec = async (request: object) => (await caller.query('SELECT dblink_exec($1, $2) AS tag', ['hand', signed(request)])).rows[0].tag as string;
  /** A hello as the SQL API sends it: the backend shows `pgbg hello <sha256 of the nonce>` as its application_name meanwhile. */
  const hello = async (c: pg.Client) => {
    await c.query(`SET application_name = '${helloApplicationName(nonce)}'`);
    return { op: 'hello', nonce, backend_pid: (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid };
  };

  before(async () => {
    db = await createTestDatabase();
    api = await startTestApi(db.url);
    caller = new pg.Client({ connectionString: api.callerUrl });
    await caller.connect();
    await caller.query('CREATE TABLE log (msg text)');
    secret = (await caller.query(OWN_SECRET_SQL)).rows[0].secret;
    await caller.query("SELECT dblink_connect('hand', 'pgbg')");
  });
  after(async () => {
    await caller?.end();
    await api?.close();
    await db?.drop();
  });

  test('an unsigned request and a request before hello are refused', async () => {
    await assert.rejects(caller.query('SELECT dblink_exec($1, $2)', ['hand', JSON.stringify({ op: 'list' })]), /accepts only pgbg SQL API requests/);
    await assert.rejects(call({ op: 'list' }, 'pid int'), /before hello/);
  });

  test('hello binds the connection to the caller backend, once; a hello for another backend, or one that does not exist, is refused', async () => {
    const other = new pg.Client({ connectionString: api.callerUrl });
    await other.connect();
    try {
      await other.query("SELECT dblink_connect('hand', 'pgbg')");
      const fake = { ...(await hello(other)), backend_pid: 1 };
      await assert.rejects(other.query('SELECT dblink_exec($1, $2)', ['hand', signed(fake)]), { code: '28000', message: /does not come from backend 1 / });
      // Claiming the caller's backend from another one: its application_name does not show the nonce.
      const claim = { ...(await hello(other)), backend_pid: (await caller.query('SELECT pg_backend_pid() AS pid')).rows[0].pid };
      await assert.rejects(other.query('SELECT dblink_exec($1, $2)', ['hand', signed(claim)]), { code: '28000', message: /does not come from backend/ });
    } finally {
      await other.end();
    }
    const h = await hello(caller);
    assert.equal(await exec(h), 'HELLO');
    await assert.rejects(exec(h), /already belongs to a caller/);
    // The same nonce on a second connection of the same backend: refused.
    await caller.query("SELECT dblink_connect('hand2', 'pgbg')");
    await assert.rejects(caller.query('SELECT dblink_exec($1, $2)', ['hand2', signed(h)]), { code: '28000', message: /belongs to another connection/ });
    await caller.query("SELECT dblink_disconnect('hand2')");
    assert.equal(api.handler.sessionCount, 1);
  });

  test('a proof from another secret, another nonce, or a used sequence number is refused', async () => {
    const wrong = randomBytes(32).toString('hex');
    await assert.rejects(caller.query('SELECT dblink_exec($1, $2)', ['hand', signed({ op: 'list' }, wrong)]), { code: '28000', message: /proof does not match/ });
    await assert.rejects(caller.query('SELECT dblink_exec($1, $2)', ['hand', signed({ op: 'list' }, secret, randomBytes(16).toString('hex'))]), { code: '28000' });
    const once = signed({ op: 'stats' });
    const cols = 'workers_launched int8, workers_completed int8, workers_failed int8, workers_canceled int8, workers_active int4, avg_execution_ms float8, max_workers int4';
    await caller.query(`SELECT * FROM dblink('hand', $1) AS t(${cols})`, [once]);
    await assert.rejects(caller.query(`SELECT * FROM dblink('hand', $1) AS t(${cols})`, [once]), { code: '28000', message: /already used/ });
    // The body is bound too: the same header with another body is refused.
    const [header] = once.split('\n');
    await assert.rejects(caller.query('SELECT dblink_exec($1, $2)', ['hand', `${header!.replace(/^pgbg1 \d+/, `pgbg1 ${++seq}`)}\n{"op":"list"}`]), { code: '28000' });
  });

  test('launch, describe_result and result relay the worker\'s rows with its column types', async () => {
    const [h] = await call<{ pid: number; cookie: string }>({ op: 'launch', sql: "SELECT 42 AS x, 'hi'::text AS y" }, 'pid int4, cookie int8');
    await exec({ op: 'wait', pid: h!.pid, cookie: h!.cookie });
    const rows = await call<{ x: number; y: string }>({ op: 'result', pid: h!.pid, cookie: h!.cookie }, 'x int4, y text');
    assert.deepEqual(rows, [{ x: 42, y: 'hi' }]);
    await assert.rejects(call({ op: 'result', pid: h!.pid, cookie: h!.cookie }, 'x int4, y text'), /already been consumed/);
  });

  test('autonomy: a launch inside a transaction that rolls back still commits', async () => {
    await caller.query('BEGIN');
    const [h] = await call<{ pid: number; cookie: string }>({ op: 'launch', sql: "INSERT INTO log VALUES ('audit')" }, 'pid int4, cookie int8');
    await caller.query('ROLLBACK');
    await exec({ op: 'wait', pid: h!.pid, cookie: h!.cookie });
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
    await exec({ op: 'detach', pid: h!.pid, cookie: h!.cookie });
  });

  test('when the caller\'s backend ends, its session closes', async () => {
    const before = api.handler.sessionCount;
    await caller.query("SELECT dblink_disconnect('hand')");
    for (let i = 0; i < 50 && api.handler.sessionCount >= before; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(api.handler.sessionCount, before - 1);
  });
});
