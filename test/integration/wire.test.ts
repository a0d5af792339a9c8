/**
 * The wire endpoint against real clients: the test PostgreSQL calling it through
 * dblink (libpq) as a non-superuser, and node-postgres talking to it directly.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Writable } from 'node:stream';
import { once } from 'node:events';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import type { NoticeMessage } from 'pg-protocol/dist/messages.js';
import { pino } from 'pino';
import { PgbgError } from '../../src/protocol/errors.js';
import { startWireServer, type WireConnection, type WireHandler, type WireServer } from '../../src/server/wire.js';
import { createLoginRole, createTestDatabase, serverUrl, urlFor, withClient } from '../helpers/db.js';

const WIRE_USER = 'wire_user';
const WIRE_PASSWORD = randomBytes(12).toString('hex');
const BIG_ROWS = 30_000;
/** libpq SASLpreps passwords: U+00A0 becomes a space and the 'ﬁ' ligature 'fi' (NFKC). */
const UNI_USER = 'wire_uni';
const UNI_PASSWORD = 'p\u00e4ss\u00a0\ufb01';

/** Everything the handler saw, for assertions. */
const seen = {
  queries: [] as string[],
  closes: new Map<number, number>(),
  aborts: 0,
  pulled: 0,
  sleeping: undefined as (() => void) | undefined,
};

function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => (cond() ? resolve() : Date.now() > until ? reject(new Error('timed out')) : setTimeout(tick, 10));
    tick();
  });
}

const text = (name: string) => ({ name, typeOid: 25 });
const int4 = (name: string) => ({ name, typeOid: 23 });

const handler: WireHandler = {
  async query(sql: string, conn: WireConnection, signal: AbortSignal) {
    seen.queries.push(sql);
    let m: RegExpExecArray | null;
    if ((m = /^select (\d+)$/i.exec(sql))) {
      const n = Number(m[1]);
      const rows = Array.from({ length: n }, (_, i) => [String(i + 1), i === 1 ? null : `row ${i + 1}`]);
      return { fields: [int4('a'), text('b')], rows, commandTag: `SELECT ${n}` };
    }
    if (sql === 'fail') throw new PgbgError('22023', 'bad thing', { detail: 'the detail', hint: 'the hint' });
    if (sql === 'crash') throw new Error('secret internal detail');
    if (sql === 'insert') return { commandTag: 'INSERT 0 1' };
    if (sql === 'two') return [{ commandTag: 'INSERT 0 1' }, { fields: [text('x')], rows: [['last']], commandTag: 'SELECT 1' }];
    if (sql === 'notice') {
      conn.notice({ message: 'remote says hi', detail: 'notice detail', code: '01000', severity: 'WARNING' });
      return { fields: [int4('a')], rows: [['1']], commandTag: 'SELECT 1' };
    }
    if (sql === 'sleep') {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 20_000);
        seen.sleeping = () => undefined;
        signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
      });
      seen.sleeping = undefined;
      if (signal.aborted) {
        seen.aborts++;
        throw signal.reason;
      }
      return { commandTag: 'SLEPT' };
    }
    if (sql === 'big') {
      async function* rows() {
        const filler = 'x'.repeat(1000);
        for (let i = 0; i < BIG_ROWS; i++) {
          seen.pulled++;
          yield [String(i), filler];
        }
      }
      return { fields: [int4('i'), text('filler')], rows: rows(), commandTag: `SELECT ${BIG_ROWS}` };
    }
    throw new PgbgError('42601', `unknown test query: ${sql}`);
  },
  onClose(conn) {
    seen.closes.set(conn.id, (seen.closes.get(conn.id) ?? 0) + 1);
  },
};

const logLines: string[] = [];
const logSink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    logLines.push(chunk.toString());
    cb();
  },
});

let server: WireServer;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let role: { name: string; password: string };
let connstr: string;

const asRole = <T>(fn: (c: pg.Client) => Promise<T>) => withClient(urlFor(db.name, role), fn);
const wireClient = async (password = WIRE_PASSWORD) => {
  const c = new pg.Client({ host: '127.0.0.1', port: server.port, user: WIRE_USER, password, database: 'jobs' });
  await c.connect();
  return c;
};

before(async () => {
  server = await startWireServer({
    handler,
    authenticate: (user) =>
      user === WIRE_USER ? { password: WIRE_PASSWORD } : user === UNI_USER ? { password: UNI_PASSWORD } : undefined,
    logger: pino({ level: 'debug' }, logSink),
  });
  db = await createTestDatabase('pgbg_wire');
  role = await createLoginRole('pgbg_wire_r');
  await withClient(db.url, (c) => c.query('CREATE EXTENSION dblink'));
  connstr = `host=127.0.0.1 port=${server.port} user=${WIRE_USER} password=${WIRE_PASSWORD} dbname=jobs`;
});

after(async () => {
  await server.close();
  await db.drop();
  await withClient(serverUrl(), (c) => c.query(`DROP ROLE IF EXISTS ${role.name}`));
});

describe('through dblink, as a non-superuser', () => {
  test('rows come back, NULLs included', async () => {
    const r = await asRole((c) => c.query('SELECT * FROM dblink($1, $2) AS t(a int, b text)', [connstr, 'select 3']));
    assert.deepEqual(r.rows, [
      { a: 1, b: 'row 1' },
      { a: 2, b: null },
      { a: 3, b: 'row 3' },
    ]);
    // dblink closes its one-shot connection when the call ends.
    await waitFor(() => server.connections() === 0);
  });

  test('a handler error keeps its SQLSTATE, detail and hint', async () => {
    const err = await asRole((c) => c.query('SELECT * FROM dblink($1, $2) AS t(a int)', [connstr, 'fail'])).then(
      () => assert.fail('expected an error'),
      (e: pg.DatabaseError) => e,
    );
    assert.equal(err.code, '22023');
    assert.equal(err.message, 'bad thing');
    assert.equal(err.detail, 'the detail');
    assert.equal(err.hint, 'the hint');
  });

  test('a notice in the middle of a result does not disturb dblink', async () => {
    // dblink 18 installs no notice receiver: libpq's default one prints remote
    // notices to the PostgreSQL server's stderr, so the SQL caller never sees
    // them (the node-postgres test below checks the notice itself).
    const r = await asRole((c) => c.query('SELECT * FROM dblink($1, $2) AS t(a int)', [connstr, 'notice']));
    assert.deepEqual(r.rows, [{ a: 1 }]);
  });

  test('named connections: connect, exec, query, disconnect → onClose once', async () => {
    const before = new Set(seen.closes.keys());
    await asRole(async (c) => {
      assert.equal((await c.query(`SELECT dblink_connect('w', $1) AS r`, [connstr])).rows[0].r, 'OK');
      assert.equal((await c.query(`SELECT dblink_exec('w', 'insert') AS r`)).rows[0].r, 'INSERT 0 1');
      const r = await c.query(`SELECT * FROM dblink('w', 'select 2') AS t(a int, b text)`);
      assert.equal(r.rows.length, 2);
      assert.equal((await c.query(`SELECT dblink_disconnect('w') AS r`)).rows[0].r, 'OK');
    });
    await waitFor(() => [...seen.closes.keys()].some((id) => !before.has(id)));
    for (const count of seen.closes.values()) assert.equal(count, 1);
  });

  test('dblink_cancel_query aborts the running handler', async () => {
    const aborts = seen.aborts;
    await asRole(async (c) => {
      await c.query(`SELECT dblink_connect('s', $1)`, [connstr]);
      assert.equal((await c.query(`SELECT dblink_send_query('s', 'sleep') AS r`)).rows[0].r, 1);
      await waitFor(() => seen.sleeping !== undefined);
      assert.equal((await c.query(`SELECT dblink_cancel_query('s') AS r`)).rows[0].r, 'OK');
      const err = await c.query(`SELECT * FROM dblink_get_result('s') AS t(x text)`).then(
        () => assert.fail('expected the canceled query to fail'),
        (e: pg.DatabaseError) => e,
      );
      assert.equal(err.code, '57014');
      await c.query(`SELECT dblink_disconnect('s')`);
    });
    assert.equal(seen.aborts, aborts + 1);
  });

  test('a non-ASCII password is SASLprepped like libpq does it', async () => {
    const uni = `host=127.0.0.1 port=${server.port} user=${UNI_USER} password='${UNI_PASSWORD}' dbname=jobs`;
    const r = await asRole((c) => c.query('SELECT * FROM dblink($1, $2) AS t(a int, b text)', [uni, 'select 1']));
    assert.equal(r.rows.length, 1);
  });

  test('a libpq asking for protocol 3.2 is negotiated down to 3.0', async (t) => {
    const version = await asRole((c) => c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v"));
    if (Number(version.rows[0]!.v) < 180000) {
      t.skip('libpq before PostgreSQL 18 has no max_protocol_version option: only 3.0 exists there');
      return;
    }
    const v32 = `${connstr} max_protocol_version=3.2`;
    const r = await asRole((c) => c.query('SELECT * FROM dblink($1, $2) AS t(a int, b text)', [v32, 'select 2']));
    assert.equal(r.rows.length, 2);
  });

  test('a wrong password is refused with 28P01', async () => {
    const bad = connstr.replace(WIRE_PASSWORD, 'not-the-password');
    const err = await asRole((c) => c.query(`SELECT dblink_connect('bad', $1)`, [bad])).then(
      () => assert.fail('expected an error'),
      (e: pg.DatabaseError) => e,
    );
    // dblink reports 08001 and puts libpq's message (with the server's 28P01 text) in the detail.
    assert.equal(err.code, '08001');
    assert.match(err.detail ?? '', /password authentication failed for user "wire_user"/);
  });
});

describe('with node-postgres as the client', () => {
  test('SCRAM login, rows, several results, empty query, SET', async () => {
    const c = await wireClient();
    try {
      const r = await c.query({ text: 'select 4', rowMode: 'array' });
      assert.equal(r.rowCount, 4);
      assert.deepEqual(r.rows[1], [2, null]);
      const notices: NoticeMessage[] = [];
      c.on('notice', (n) => notices.push(n));
      await c.query('notice');
      assert.deepEqual(
        notices.map(({ severity, code, message, detail }) => ({ severity, code, message, detail })),
        [{ severity: 'WARNING', code: '01000', message: 'remote says hi', detail: 'notice detail' }],
      );
      const multi = (await c.query('two')) as unknown as pg.QueryResult[];
      assert.deepEqual(multi.map((x) => x.command), ['INSERT', 'SELECT']);
      const empty = await c.query('  ;  ');
      assert.deepEqual(empty.rows, []);
      assert.equal((await c.query(`SET client_encoding TO 'UTF8'`)).command, 'SET');
      await assert.rejects(c.query(`SET client_encoding TO 'LATIN1'`), { code: '0A000' });
      assert.ok(!seen.queries.some((q) => /^set /i.test(q)), 'SET is answered without the handler');
    } finally {
      await c.end();
    }
  });

  test('errors: coded, internal (not leaked, but logged), extended protocol', async () => {
    const c = await wireClient();
    try {
      await assert.rejects(c.query('fail'), { code: '22023', message: 'bad thing', detail: 'the detail', hint: 'the hint' });
      await assert.rejects(c.query('crash'), (e: pg.DatabaseError) => e.code === 'XX000' && e.message === 'internal error');
      assert.ok(logLines.some((l) => l.includes('secret internal detail')));
      // Parameters make node-postgres use Parse/Bind/Execute/Sync.
      await assert.rejects(c.query('select $1', [1]), { code: '0A000' });
      assert.equal((await c.query('select 1')).rowCount, 1, 'still usable');
    } finally {
      await c.end();
    }
  });

  test('wrong password and unknown user both get 28P01', async () => {
    await assert.rejects(wireClient('nope'), { code: '28P01' });
    const stranger = new pg.Client({ host: '127.0.0.1', port: server.port, user: 'nobody', password: 'x', database: 'jobs' });
    await assert.rejects(stranger.connect(), { code: '28P01' });
  });

  test('CancelRequest needs the right secret key', async () => {
    const c = await wireClient();
    const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
    const sendCancel = async (key: number) => {
      const s = net.connect(server.port, '127.0.0.1');
      await once(s, 'connect');
      s.end(serialize.cancel(processID, key));
      await once(s, 'close');
    };
    try {
      const aborts = seen.aborts;
      // Settle into a value right away so the rejection is never "unhandled".
      const q = c.query('sleep').then(() => undefined, (e: unknown) => e);
      await waitFor(() => seen.sleeping !== undefined);
      const refusedCancels = () => logLines.filter((l) => l.includes('"msg":"wire cancel request"') && l.includes('"matched":false')).length;
      const refusedBefore = refusedCancels();
      await sendCancel(secretKey ^ 1);
      // The server has judged the request once it logged it (bounded wait); the query still sleeps.
      await waitFor(() => refusedCancels() === refusedBefore + 1);
      assert.equal(seen.aborts, aborts, 'a wrong key cancels nothing');
      assert.notEqual(seen.sleeping, undefined);
      await sendCancel(secretKey);
      assert.equal(((await q) as pg.DatabaseError).code, '57014');
      assert.equal(seen.aborts, aborts + 1);
    } finally {
      await c.end();
    }
  });

  test('rows are only produced as fast as the client reads them', async () => {
    const c = await wireClient();
    const stream = (c as unknown as { connection: { stream: net.Socket } }).connection.stream;
    try {
      seen.pulled = 0;
      const q = c.query({ text: 'big', rowMode: 'array' });
      stream.pause();
      await waitFor(() => seen.pulled > 0);
      await new Promise((r) => setTimeout(r, 300));
      const stalled = seen.pulled;
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(seen.pulled, stalled, 'the producer waits while the client does not read');
      assert.ok(stalled < BIG_ROWS, `pulled ${stalled} of ${BIG_ROWS}`);
      stream.resume();
      assert.equal((await q).rows.length, BIG_ROWS);
    } finally {
      await c.end();
    }
  });

  test('GSSENCRequest and SSLRequest are both answered N', async () => {
    const s = net.connect(server.port, '127.0.0.1');
    await once(s, 'connect');
    const gss = Buffer.alloc(8);
    gss.writeInt32BE(8, 0);
    gss.writeInt32BE(80877104, 4);
    const reply = async (bytes: Buffer) => {
      s.write(bytes);
      const [chunk] = (await once(s, 'data')) as [Buffer];
      return chunk;
    };
    assert.equal((await reply(gss)).toString(), 'N');
    assert.equal((await reply(serialize.requestSsl())).toString(), 'N');
    const auth = await reply(serialize.startup({ user: WIRE_USER, database: 'jobs' }));
    assert.equal(String.fromCharCode(auth[0]!), 'R');
    assert.equal(auth.readInt32BE(5), 10, 'AuthenticationSASL');
    assert.ok(auth.includes('SCRAM-SHA-256'));
    s.destroy();
  });

  test('something that is not PostgreSQL is hung up on', async () => {
    const s = net.connect(server.port, '127.0.0.1');
    await once(s, 'connect');
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await once(s, 'close');
    assert.equal(Buffer.concat(got).length, 0);
  });

  test('connections logging in at once are capped: one beyond is closed, a login after that works', async () => {
    const other = await startWireServer({ handler, authenticate: () => ({ password: 'pw' }), logger: pino({ level: 'silent' }), maxPendingLogins: 3, authTimeoutMs: 120_000 });
    const idle: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const s = net.connect(other.port, '127.0.0.1');
        await once(s, 'connect');
        idle.push(s);
      }
      for (let i = 0; i < 50 && other.connections() < 3; i++) await new Promise((r) => setTimeout(r, 10));
      const fourth = net.connect(other.port, '127.0.0.1');
      // Without the cap it would stay open until the login timeout (two minutes here).
      const closed = await Promise.race([once(fourth, 'close').then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
      fourth.destroy();
      assert.equal(closed, true, 'the fourth connection was closed by the server');
      assert.equal(other.connections(), 3, 'the fourth was never kept');
      for (const s of idle) s.destroy();
      for (let i = 0; i < 100 && other.connections() > 0; i++) await new Promise((r) => setTimeout(r, 10));
      const c = new pg.Client({ host: '127.0.0.1', port: other.port, user: 'u', password: 'pw', database: 'd' });
      await c.connect();
      await c.end();
    } finally {
      for (const s of idle) s.destroy();
      await other.close();
    }
  });

  test('close() ends open connections and waits for onClose', async () => {
    const other = await startWireServer({ handler, authenticate: () => ({ password: 'pw' }), logger: pino({ level: 'silent' }) });
    const c = new pg.Client({ host: '127.0.0.1', port: other.port, user: 'u', password: 'pw', database: 'd' });
    c.on('error', () => undefined);
    await c.connect();
    assert.equal(other.connections(), 1);
    const ended = new Promise((resolve) => c.once('end', resolve));
    const closes = [...seen.closes.values()].reduce((a, b) => a + b, 0);
    await other.close();
    assert.equal(other.connections(), 0);
    assert.equal([...seen.closes.values()].reduce((a, b) => a + b, 0), closes + 1);
    await ended;
  });

  test('a SCRAM verifier from pg_authid works as the secret', async () => {
    const verifier = await withClient(serverUrl(), (c) =>
      c.query<{ v: string }>('SELECT rolpassword AS v FROM pg_authid WHERE rolname = $1', [role.name]),
    ).then((r) => r.rows[0]!.v);
    assert.match(verifier, /^SCRAM-SHA-256\$/);
    const other = await startWireServer({
      handler,
      authenticate: (user) => (user === role.name ? { scramVerifier: verifier } : undefined),
      logger: pino({ level: 'silent' }),
    });
    try {
      const c = new pg.Client({ host: '127.0.0.1', port: other.port, user: role.name, password: role.password, database: 'd' });
      await c.connect();
      assert.equal((await c.query('select 1')).rowCount, 1);
      await c.end();
      const bad = new pg.Client({ host: '127.0.0.1', port: other.port, user: role.name, password: 'wrong', database: 'd' });
      await assert.rejects(bad.connect(), { code: '28P01' });
    } finally {
      await other.close();
    }
  });

  test('no secret ever reaches the log: logins right and wrong, by password and by SCRAM verifier, through dblink too', async () => {
    // A server of its own, logging at debug to its own sink: what this test did is all that is in it.
    const lines: string[] = [];
    const sink = new Writable({ write(chunk: Buffer, _enc, cb) { lines.push(chunk.toString()); cb(); } });
    const verifier = await withClient(serverUrl(), (c) =>
      c.query<{ v: string }>('SELECT rolpassword AS v FROM pg_authid WHERE rolname = $1', [role.name]),
    ).then((r) => r.rows[0]!.v);
    const other = await startWireServer({
      handler,
      authenticate: (user) => (user === WIRE_USER ? { password: WIRE_PASSWORD } : user === role.name ? { scramVerifier: verifier } : undefined),
      logger: pino({ level: 'debug' }, sink),
    });
    try {
      const login = async (user: string, password: string) => {
        const c = new pg.Client({ host: '127.0.0.1', port: other.port, user, password, database: 'jobs' });
        await c.connect();
        await assert.rejects(c.query('crash'), { code: 'XX000' });
        await c.end();
      };
      await login(WIRE_USER, WIRE_PASSWORD);
      await login(role.name, role.password);
      for (const [user, password] of [[WIRE_USER, WIRE_PASSWORD + 'x'], [role.name, role.password + 'x'], ['nobody', WIRE_PASSWORD]] as const) {
        await assert.rejects(new pg.Client({ host: '127.0.0.1', port: other.port, user, password, database: 'jobs' }).connect(), { code: '28P01' });
      }
      const viaDblink = `host=127.0.0.1 port=${other.port} user=${WIRE_USER} password=${WIRE_PASSWORD} dbname=jobs`;
      assert.equal((await asRole((c) => c.query('SELECT * FROM dblink($1, $2) AS t(a int, b text)', [viaDblink, 'select 1']))).rows.length, 1);
      await waitFor(() => other.connections() === 0);
    } finally {
      await other.close();
    }
    const text = lines.join('');
    // The log did see this test's logins (so an empty log cannot pass).
    assert.equal(text.match(/wire connection authenticated/g)?.length, 3, text);
    assert.equal(text.match(/wire authentication failed/g)?.length, 3, text);
    assert.ok(!text.includes(WIRE_PASSWORD), 'wire password logged');
    assert.ok(!text.includes(role.password), 'role password logged');
    assert.ok(!text.includes(verifier) && !text.includes(verifier.split('$')[2]!.split(':')[1]!), 'SCRAM verifier logged');
  });
});
