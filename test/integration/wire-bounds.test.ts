/**
 * The wire endpoint's bounds against real clients (raw sockets and
 * node-postgres): what a client may make the server buffer before and after it
 * logged in, and how long it may take to log in.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { pino } from 'pino';
import { startWireServer, type WireHandler, type WireServer } from '../../src/server/wire.js';

const USER = 'bounds_user';
const PASSWORD = randomBytes(12).toString('hex');
const MB = 1024 * 1024;

const seen: string[] = [];
const handler: WireHandler = {
  query(sql) {
    seen.push(sql.length > 100 ? `${sql.slice(0, 20)}… (${sql.length} characters)` : sql);
    if (/^select 1$/i.test(sql)) return Promise.resolve({ fields: [{ name: 'one', typeOid: 23 }], rows: [['1']], commandTag: 'SELECT 1' });
    return Promise.resolve({ commandTag: 'DONE' });
  },
};

const servers: WireServer[] = [];
async function server(options: Partial<Parameters<typeof startWireServer>[0]> = {}): Promise<WireServer> {
  const s = await startWireServer({
    handler,
    authenticate: (user) => (user === USER ? { password: PASSWORD } : undefined),
    logger: pino({ level: 'silent' }),
    ...options,
  });
  servers.push(s);
  return s;
}

after(async () => {
  for (const s of servers) await s.close();
});

/** A raw socket that sent its StartupMessage and got the server's SASL request. */
async function startedSocket(port: number): Promise<{ socket: net.Socket; received: Buffer[]; closed: Promise<void> }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  const received: Buffer[] = [];
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await once(socket, 'connect');
  socket.write(serialize.startup({ user: USER, database: 'jobs' }));
  const [first] = (await once(socket, 'data')) as [Buffer];
  assert.equal(String.fromCharCode(first[0]!), 'R', 'the server asks for authentication');
  socket.on('data', (d: Buffer) => received.push(d));
  return { socket, received, closed };
}

/**
 * Writes zeros in 64 kB pieces, each only once the last was taken by the
 * kernel, until `total` or until the connection fails. Returns how many bytes
 * the kernel took.
 */
async function stream(socket: net.Socket, total: number): Promise<number> {
  const piece = Buffer.alloc(64 * 1024);
  let taken = 0;
  while (taken < total && !socket.destroyed) {
    const ok = await new Promise<boolean>((resolve) => socket.write(piece, (err) => resolve(!err)));
    if (!ok) break;
    taken += piece.length;
  }
  return taken;
}

/** The SQLSTATEs of the ErrorResponses in `bytes` (a backend message stream). */
function errorCodes(bytes: Buffer): string[] {
  const codes: string[] = [];
  for (let at = 0; at + 5 <= bytes.length; ) {
    const type = bytes[at]!;
    const end = at + 1 + bytes.readInt32BE(at + 1);
    if (type === 0x45) {
      const body = bytes.subarray(at + 5, end).toString();
      const code = /(?:^|\0)C([0-9A-Z]{5})\0/.exec(body);
      if (code) codes.push(code[1]!);
    }
    at = end;
  }
  return codes;
}

const rss = () => `${Math.round(process.memoryUsage().rss / MB)} MB`;

describe('before authentication', () => {
  let wire: WireServer;
  before(async () => {
    wire = await server();
  });

  test('a password message announcing 2 GB is cut off after the header, not buffered', async () => {
    const { socket, received, closed } = await startedSocket(wire.port);
    const inbound = wire.inbound();
    const rssBefore = rss();
    const header = Buffer.alloc(5);
    header[0] = 0x70; // 'p': PasswordMessage / SASLInitialResponse
    header.writeInt32BE(0x7fffffff, 1);
    socket.write(header);
    const total = 128 * MB;
    const taken = await stream(socket, total);
    const cut = socket.destroyed || socket.readableEnded || received.length > 0;
    socket.destroy();
    await closed;
    const delta = { read: wire.inbound().read - inbound.read, parsed: wire.inbound().parsed - inbound.parsed };
    process.stdout.write(`# pre-auth stream: the kernel took ${Math.round(taken / MB)} of ${total / MB} MB; server read ${delta.read} B, parsed ${delta.parsed} B; RSS ${rssBefore} → ${rss()}\n`);
    assert.ok(taken < total, `the server took all ${total / MB} MB of a message it cannot accept`);
    assert.ok(cut, 'the server did not end the connection');
    assert.deepEqual(errorCodes(Buffer.concat(received)).filter((c) => c !== '08P01'), [], 'only a protocol-violation FATAL, if any');
    // What the server read before it stopped reading, and what reached the message parser (the header only).
    assert.ok(delta.read <= 1 * MB, `the server read ${delta.read} bytes`);
    assert.ok(delta.parsed <= 64 * 1024, `the server buffered ${delta.parsed} bytes`);
  });

  test('after that, logging in works as before', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: wire.port, user: USER, password: PASSWORD, database: 'jobs' });
    await c.connect();
    assert.deepEqual((await c.query('select 1')).rows, [{ one: 1 }]);
    await c.end();
  });

  test('a client that does not finish logging in is cut off after authTimeoutMs (08006)', async () => {
    const quick = await server({ authTimeoutMs: 200 });
    const { received, closed } = await startedSocket(quick.port);
    // A generous bound, only so that a server that never times out fails here instead of hanging.
    const timedOut = await Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 15_000).unref())]);
    assert.ok(timedOut, 'the connection was still open 15 s after an authTimeoutMs of 200');
    assert.deepEqual(errorCodes(Buffer.concat(received)), ['08006']);
  });
});

describe('after authentication', () => {
  test('a Query over maxRequestBytes gets 54000, is never buffered whole, and the connection goes on', async () => {
    const wire = await server({ maxRequestBytes: MB });
    const c = new pg.Client({ host: '127.0.0.1', port: wire.port, user: USER, password: PASSWORD, database: 'jobs' });
    await c.connect();
    try {
      const inbound = wire.inbound();
      const big = `SELECT '${'x'.repeat(3 * MB)}'`;
      await assert.rejects(c.query(big), (err: pg.DatabaseError) => {
        assert.equal(err.code, '54000', err.message);
        assert.match(err.message, /exceeds the limit of 1048576 bytes/);
        return true;
      });
      // Answered from its header, while the rest still arrives; the stream stays in step: the next query is answered.
      assert.deepEqual((await c.query('select 1')).rows, [{ one: 1 }]);
      const delta = { read: wire.inbound().read - inbound.read, parsed: wire.inbound().parsed - inbound.parsed };
      process.stdout.write(`# oversized Query: server read ${delta.read} B, parsed ${delta.parsed} B\n`);
      assert.ok(delta.read >= 3 * MB, 'the whole message was read (and skipped)');
      assert.ok(delta.parsed < 64 * 1024, `the server buffered ${delta.parsed} bytes of it`);
      assert.ok(!seen.some((q) => q.includes('xxxxxxxx')), 'the handler never saw it');
      const justUnder = `SELECT '${'y'.repeat(MB - 100)}'`;
      assert.equal((await c.query(justUnder)).command, 'DONE');
      // An oversized Parse (extended protocol) is refused the same way, and the rest waits for Sync.
      await assert.rejects(c.query({ text: big, values: [1] }), { code: '54000' });
      assert.deepEqual((await c.query('select 1')).rows, [{ one: 1 }]);
    } finally {
      await c.end();
    }
  });

  test('the default limit is 16 MB', async () => {
    const wire = await server();
    const c = new pg.Client({ host: '127.0.0.1', port: wire.port, user: USER, password: PASSWORD, database: 'jobs' });
    await c.connect();
    try {
      await assert.rejects(c.query(`SELECT '${'z'.repeat(17 * MB)}'`), { code: '54000' });
      assert.equal((await c.query(`SELECT '${'z'.repeat(15 * MB)}'`)).command, 'DONE');
    } finally {
      await c.end();
    }
  });
});
