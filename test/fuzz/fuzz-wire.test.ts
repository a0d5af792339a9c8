/**
 * Fuzzing the wire endpoint's message handling with fast-check, on a real
 * running endpoint: the SQL API's handler, engine and role keys on a test
 * database where the API is installed (test/helpers/sql-api.ts), served by a
 * wire server of its own with a small request limit, reached by raw
 * net.Socket clients on loopback.
 *
 * - Before authentication: first packets (startup packets of every protocol
 *   version and parameter list, SSLRequest, GSSENCRequest, CancelRequest),
 *   password/SASL messages, any typed message, random bytes, each of them
 *   mutated (bytes changed, cut short, length fields replaced), sent in random
 *   pieces, then a FIN.
 * - After a real SCRAM login: sequences of every frontend message type (Query
 *   with any text, SQL API requests with any JSON, Parse, Bind, Describe,
 *   Execute, Close, Sync, Flush, CopyData/Done/Fail, FunctionCall, Terminate,
 *   unknown types, messages over the request limit, impossible lengths), in
 *   random pieces, then a query that must be answered unless the connection
 *   was ended with a FATAL (or a Terminate).
 * - One session's bytes split at every byte boundary: the same answers.
 *
 * The properties: the server answers every input, or closes the connection
 * with a FATAL that has a SQLSTATE (or silently, when the input was not
 * PostgreSQL's protocol); every ErrorResponse has a SQLSTATE and none is
 * XX000; nothing is printed with console.error and nothing is logged as an
 * error; no connection outlives its client. After all of it the server serves
 * ordinary clients, has no connection or socket left over, and its heap came
 * back to where it was.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { pino } from 'pino';
import { fullCollection } from '../../src/server/memory-release.js';
import { roleOfLogin } from '../../src/server/sql-api-handler.js';
import { isSqlState } from '../../src/server/wire-errors.js';
import { startWireServer, type WireServer } from '../../src/server/wire.js';
import { createTestDatabase } from '../helpers/db.js';
import { startTestApi, type TestApi } from '../helpers/sql-api.js';
import { cut, fieldsOf, firstPacket, login, message, parseBackend, RawClient, type BackendMessage, type Login } from './raw-wire.js';
import { fuzzTestTimeout, runs, seed, Tally, Watchdog } from './support.js';

/** Bounds on waiting for the server: reached only when it hangs. */
const DEADLINE_MS = 15_000;
/** The fuzzed server's request limit: the smallest allowed, so that messages over it are cheap to send whole. */
const MAX_REQUEST_BYTES = 1024;
const MB = 1024 * 1024;

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let api: TestApi;
let wire: WireServer;
let who: Login;
/** Lines the server logged at level error or above. */
const errorLogs: string[] = [];
/** What anything printed with console.error (pg-gateway does, for every exception it catches). */
const consoleErrors: string[] = [];
const consoleError = console.error;
let baseline: { heap: number; tcp: number; sessions: number };
/** The server runs in this process: if an input makes it loop forever, this says which. */
let watchdog: Watchdog;

const tcpHandles = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
function heapAfterCollection(): number {
  fullCollection()();
  fullCollection()();
  return process.memoryUsage().heapUsed;
}

before(async () => {
  db = await createTestDatabase('pgbg_fuzz');
  api = await startTestApi(db.url);
  const caller = new pg.Client({ connectionString: api.callerUrl });
  await caller.connect();
  try {
    const { rows } = await caller.query<{ o: string }>(
      "SELECT o FROM pg_catalog.pg_user_mappings m, unnest(m.umoptions) o WHERE m.srvname = 'pgbg' AND m.usename = current_user",
    );
    const option = (name: string) => rows.find((r) => r.o.startsWith(`${name}=`))!.o.slice(name.length + 1);
    who = { user: option('user'), password: option('password'), database: db.name };
  } finally {
    await caller.end();
  }
  const logSink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        const entry = JSON.parse(line) as { level: number; msg: string; err?: { message?: string } };
        if (entry.level >= 50) errorLogs.push(`${entry.msg}${entry.err?.message ? `: ${entry.err.message}` : ''}`);
      }
      done();
    },
  });
  wire = await startWireServer({
    handler: api.handler,
    logger: pino({ level: 'warn' }, logSink),
    maxRequestBytes: MAX_REQUEST_BYTES,
    authenticate: async (user, database) => {
      const oid = roleOfLogin(user);
      const key = oid === undefined ? undefined : await api.keys.read(database, oid);
      return key ? { scramVerifier: key.scram } : undefined;
    },
  });
  // A first login opens the role keys' connections (kept for later logins): the baseline has them.
  const first = new pg.Client({ host: '127.0.0.1', port: wire.port, user: who.user, password: who.password, database: who.database });
  await first.connect();
  await first.end();
  for (let i = 0; i < 100 && wire.connections() > 0; i++) await new Promise((r) => setTimeout(r, 10));
  console.error = (...args: unknown[]) => {
    consoleErrors.push(args.map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : String(a))).join(' '));
  };
  baseline = { heap: heapAfterCollection(), tcp: tcpHandles(), sessions: api.handler.sessionCount };
  watchdog = new Watchdog(10_000);
});

after(async () => {
  await watchdog?.stop();
  console.error = consoleError;
  await wire?.close();
  await api?.close();
  await db?.drop();
});

/** Nothing went wrong on the server's side so far (console.error, error logs). */
function assertQuietServer(input: string): void {
  assert.deepEqual(consoleErrors.splice(0), [], `console.error while serving ${input}`);
  assert.deepEqual(errorLogs.splice(0), [], `the server logged errors while serving ${input}`);
}

/** Checks every ErrorResponse and returns the SQLSTATEs, with FATAL ones marked. */
function errorsIn(messages: BackendMessage[], input: string): { code: string; fatal: boolean; message: string }[] {
  return messages.filter((m) => m.type === 'E').map((m) => {
    const f = fieldsOf(m.body);
    assert.ok(isSqlState(f.C), `an ErrorResponse without a SQLSTATE (${JSON.stringify(f)}) for ${input}`);
    assert.notEqual(f.C, 'XX000', `an internal error (${JSON.stringify(f)}) for ${input}`);
    assert.ok(f.S === 'ERROR' || f.S === 'FATAL', `severity ${f.S} for ${input}`);
    assert.equal(f.V, f.S, `V and S differ for ${input}`);
    assert.ok(f.M, `an ErrorResponse without a message for ${input}`);
    return { code: f.C, fatal: f.S === 'FATAL', message: f.M };
  });
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const describeScript = (bytes: Buffer, pieces: number) => `${bytes.length > 200 ? `${hex(bytes.subarray(0, 200))}…` : hex(bytes)} (${bytes.length} bytes in ${pieces} pieces)`;

// ------------------------------------------------------------------ before authentication

const SSL = 80877103;
const GSSENC = 80877104;
const CANCEL = 80877102;

function startup(params: [string, string][], version: number): Buffer {
  const body = Buffer.concat([...params.flatMap(([k, v]) => [Buffer.from(`${k}\0`), Buffer.from(`${v}\0`)]), Buffer.from([0])]);
  return firstPacket(version, body);
}

const cString = (max: number) => fc.string({ unit: 'binary', maxLength: max }).map((s) => s.replaceAll('\0', ''));
const version = fc.oneof(
  { weight: 6, arbitrary: fc.constant(0x30000) },
  { weight: 1, arbitrary: fc.constantFrom(0x30002, 0x3ffff, 0x20000, 0x40000, 0, -1) },
  { weight: 1, arbitrary: fc.integer({ min: 0x30000, max: 0x3ffff }) },
  { weight: 1, arbitrary: fc.integer() },
);
const userParam = (): fc.Arbitrary<[string, string][]> => fc.oneof(
  fc.constant([['user', who.user], ['database', who.database]] as [string, string][]),
  fc.tuple(fc.integer({ min: 0, max: 2 ** 32 }), cString(12)).map(([n, d]) => [['user', `r${n}`], ['database', d]] as [string, string][]),
  fc.tuple(cString(12), cString(12)).map(([u, d]) => [['user', u], ['database', d]] as [string, string][]),
  fc.constant([] as [string, string][]),
);
const otherParams = fc.array(fc.tuple(fc.oneof(fc.constantFrom('application_name', 'options', 'client_encoding', 'replication', '_pq_.x', 'user', '__proto__'), cString(10)), cString(20)), { maxLength: 3 });

const saslInitial = fc.record({
  mechanism: fc.oneof(fc.constantFrom('SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS', ''), cString(20)),
  data: fc.oneof(fc.constantFrom('n,,n=*,r=abc', 'n,,', 'y,,n=,r=', 'p=tls-server-end-point,,n=,r=x', ''), fc.string({ maxLength: 40 })),
  lengthDelta: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -5, max: 5 }) }, { weight: 1, arbitrary: fc.constantFrom(-1e9, 2 ** 31 - 1) }),
  minusOne: fc.boolean(),
}).map(({ mechanism, data, lengthDelta, minusOne }) => {
  const d = Buffer.from(data);
  const len = Buffer.alloc(4);
  len.writeInt32BE(minusOne && lengthDelta !== 0 ? -1 : Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, d.length + lengthDelta)));
  return message(0x70, Buffer.concat([Buffer.from(`${mechanism}\0`), len, d]));
});

/** One piece of what a client may send before it logged in. */
const preAuthPiece = (): fc.Arbitrary<Buffer> => fc.oneof(
  { weight: 8, arbitrary: fc.tuple(userParam(), otherParams, version).map(([u, o, v]) => startup([...u, ...o], v)) },
  { weight: 1, arbitrary: fc.tuple(version, fc.uint8Array({ maxLength: 40 })).map(([v, body]) => firstPacket(v, body)) },
  { weight: 1, arbitrary: fc.constantFrom(firstPacket(SSL), firstPacket(GSSENC)) },
  { weight: 1, arbitrary: fc.tuple(fc.integer(), fc.uint8Array({ maxLength: 12 })).map(([pid, key]) => firstPacket(CANCEL, Buffer.concat([Buffer.from(new Int32Array([pid]).buffer).reverse(), key]))) },
  { weight: 3, arbitrary: saslInitial },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }).map((s) => message(0x70, Buffer.from(s))) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 30 })).map(([t, b]) => message(t, b)) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => Buffer.from(b)) },
  // A header alone, announcing more than the server takes before authentication, or less than a header.
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 1, 3, 65_537, 1 << 24, 2 ** 31 - 1, 2 ** 32 - 1)).map(([t, n]) => lengthHeader(t, n)) },
);

function lengthHeader(type: number, length: number): Buffer {
  const h = Buffer.alloc(5);
  h[0] = type;
  h.writeUInt32BE(length >>> 0, 1);
  return h;
}

/** A piece with some bytes changed, cut short, or with its length field replaced. */
const mutated = (piece: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> => fc.tuple(
  piece,
  fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
  fc.option(fc.nat(), { freq: 3 }),
  fc.option(fc.tuple(fc.constantFrom(0, 1), fc.constantFrom(0, 4, 7, 8, 9, 9_999, 10_000, 10_001, 65_536, 2 ** 31 - 1, 2 ** 32 - 1)), { freq: 3 }),
).map(([p, changes, cutAt, length]) => {
  const b = Buffer.from(p);
  for (const [at, byte] of changes) if (b.length > 0) b[at % b.length] = byte;
  if (length && b.length >= length[0] + 4) b.writeUInt32BE(length[1] >>> 0, length[0]);
  return cutAt === null || b.length === 0 ? b : b.subarray(0, cutAt % (b.length + 1));
});

describe('before authentication', () => {
  test('every first packet and login message is answered, or the connection closed with a SQLSTATE; the server never breaks', { timeout: fuzzTestTimeout }, async () => {
    const numRuns = runs(120);
    const tally = new Tally('wire, before authentication');
    const script = fc.record({
      // Half the time a good start (as libpq's, for the real login), so that what follows meets a login in progress.
      start: fc.option(fc.constantFrom(startup([['user', who.user], ['database', who.database]], 0x30000), Buffer.concat([firstPacket(SSL), startup([['user', who.user], ['database', who.database]], 0x30000)])), { freq: 2 }),
      pieces: fc.array(fc.oneof({ weight: 4, arbitrary: preAuthPiece() }, { weight: 1, arbitrary: mutated(preAuthPiece()) }), { minLength: 1, maxLength: 5 }),
      cuts: fc.array(fc.nat(), { maxLength: 4 }),
    });
    await fc.assert(
      fc.asyncProperty(script, async ({ start, pieces, cuts }) => {
        const bytes = Buffer.concat(start ? [start, ...pieces] : pieces);
        const writes = cut(bytes, cuts);
        const input = describeScript(bytes, writes.length);
        watchdog.current = `before authentication: ${input}`;
        tally.start();
        const c = await RawClient.connect(wire.port);
        await c.writeAll(writes);
        assert.equal(await c.finish(DEADLINE_MS), 'closed', `the server kept the connection open after the client's FIN: ${input}`);
        const out = parseBackend(c.bytes());
        assert.equal(out.malformed, undefined, `malformed answer to ${input}`);
        assert.equal(out.rest, 0, `an answer cut short for ${input}`);
        const errors = errorsIn(out.messages, input);
        const fatal = errors.findIndex((e) => e.fatal);
        if (fatal >= 0) assert.equal(out.messages.at(-1)?.type, 'E', `messages after a FATAL for ${input}`);
        assert.ok(!out.messages.some((m) => m.type === 'Z'), `ReadyForQuery without a login: ${input}`);
        assertQuietServer(input);
        const last = errors.at(-1);
        const outcome = last ? `refused ${last.code}` : out.messages.some((m) => m.type === 'R') ? 'asked for a password, then FIN' : out.answers > 0 ? 'answered N, then FIN' : 'closed without a word';
        tally.add(outcome, bytes.length);
      }),
      // No shrinking: each try of a failing case may wait for a deadline; the first counterexample is reported.
      { seed, numRuns, includeErrorInReport: true, endOnFailure: true },
    );
    tally.print(numRuns);
  });
});

// ------------------------------------------------------------------ after authentication

const Q = 0x51;

/** A Query's text: anything, SQL API requests with any JSON, what dblink sends. */
const queryText = fc.oneof(
  fc.constantFrom('', ';', ' \n\t', "SET client_encoding TO 'UTF8'", "set client_encoding to 'LATIN1'", 'SET application_name = x', 'select 1', 'BEGIN', 'COMMIT', 'SELECT 1; SELECT 2'),
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.tuple(fc.bigInt({ min: 0n, max: 2n ** 66n }), fc.array(fc.constantFrom('0', '1'), { minLength: 256, maxLength: 256 }), fc.oneof(fc.json({ maxDepth: 3 }), fc.constantFrom(
    '{"op":"list"}', '{"op":"hello","nonce":"00000000000000000000000000000000","backend_pid":1}', '{"op":"launch","sql":"SELECT 1\\u0000; COMMIT"}', '{"op":"launch","sql":"SELECT \'\\ud800\u4e00\'; COMMIT"}',
    '{"op":"wait_any","handles":[]}', '{"__proto__":{"op":"list"}}', '{"op":"constructor"}',
  ))).map(([s, bits, body]) => `pgbg1 ${s} ${bits.join('')}\n${body}`),
);

/** One message a logged-in client may send, well-formed or not. */
const postAuthMessage = (): fc.Arbitrary<Buffer> => fc.oneof(
  { weight: 12, arbitrary: queryText.map((t) => serialize.query(t)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((b) => message(Q, b)) },
  { weight: 2, arbitrary: fc.record({ name: cString(8), text: fc.string({ maxLength: 30 }), types: fc.array(fc.integer({ min: 0, max: 2 ** 31 - 1 }), { maxLength: 3 }) }).map((p) => serialize.parse(p)) },
  { weight: 2, arbitrary: fc.record({ portal: cString(8), statement: cString(8), values: fc.array(fc.oneof(fc.string({ maxLength: 10 }), fc.constant(null)), { maxLength: 3 }) }).map((b) => serialize.bind(b)) },
  { weight: 1, arbitrary: fc.record({ type: fc.constantFrom('S' as const, 'P' as const), name: cString(8) }).chain((d) => fc.constantFrom(serialize.describe(d), serialize.close(d))) },
  { weight: 1, arbitrary: fc.record({ portal: cString(8), rows: fc.nat() }).map((e) => serialize.execute(e)) },
  { weight: 4, arbitrary: fc.constantFrom(serialize.sync(), serialize.flush(), serialize.copyDone()) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 30 }).map((b) => serialize.copyData(Buffer.from(b))) },
  { weight: 1, arbitrary: cString(20).map((s) => serialize.copyFail(s)) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 30 }).map((b) => message(0x46, b)) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 20 })).map(([t, b]) => message(t, b)) },
  // The type the server's framer uses for its own marker of an oversized message, forged.
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }).map((b) => message(0x00, b)) },
  // Over the request limit, sent whole (the server skips the body as it arrives).
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(Q, Q, 0x50, 0x42, 0x46, 0x64, 0x48, 0x53, 0x58, 0x00, 0x7a), fc.integer({ min: MAX_REQUEST_BYTES - 3, max: 4 * MAX_REQUEST_BYTES })).map(([t, n]) => message(t, Buffer.alloc(n, 0x41))) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 3 })).map(([t, n]) => lengthHeader(t, n)) },
  { weight: 1, arbitrary: fc.constant(serialize.end()) },
);

/**
 * A Sync (which ends any extended-protocol error's skipping), then a query the
 * server answers itself with an error naming `marker`: proof that everything
 * before it was answered.
 */
const ping = (marker: string) => Buffer.concat([serialize.sync(), serialize.query(`SET client_encoding TO '${marker}'`)]);
const pinged = (marker: string) => (messages: BackendMessage[]) => {
  const at = messages.findIndex((m) => m.type === 'E' && fieldsOf(m.body).M?.includes(marker));
  return at >= 0 && messages[at + 1]?.type === 'Z';
};

/** Logs in (each login message split by `split`), sends `pieces`, then the ping; returns what the server sent after the login. */
async function session(pieces: Buffer[], marker: string, split?: (b: Buffer) => Buffer[]): Promise<{ messages: BackendMessage[]; closed: boolean; answered: boolean; error: string | undefined }> {
  const c = await RawClient.connect(wire.port);
  const start = await login(c, who, DEADLINE_MS, split);
  await c.writeAll(pieces);
  await c.write(ping(marker));
  const answered = await c.until((b) => pinged(marker)(parseBackend(b.subarray(start)).messages), DEADLINE_MS);
  const wasClosed = c.closed;
  if (!c.closed) {
    await c.write(serialize.end());
    assert.equal(await c.finish(DEADLINE_MS), 'closed', 'the server did not close after Terminate');
  }
  const out = parseBackend(c.bytes().subarray(start));
  assert.equal(out.malformed, undefined);
  assert.equal(out.rest, 0, 'an answer cut short');
  return { messages: out.messages, closed: wasClosed, answered, error: c.error };
}

describe('after authentication', () => {
  test('every message sequence is answered up to a later query, or ended by a FATAL with a SQLSTATE; the server never breaks', { timeout: fuzzTestTimeout }, async () => {
    const numRuns = runs(80);
    const tally = new Tally('wire, after authentication');
    const script = fc.record({ messages: fc.array(postAuthMessage(), { minLength: 1, maxLength: 8 }), cuts: fc.array(fc.nat(), { maxLength: 5 }) });
    let n = 0;
    await fc.assert(
      fc.asyncProperty(script, async ({ messages, cuts }) => {
        const bytes = Buffer.concat(messages);
        const writes = cut(bytes, cuts);
        const input = describeScript(bytes, writes.length);
        const marker = `pgbg_ping_${n++}`;
        watchdog.current = `after authentication: ${input}`;
        tally.start();
        const { messages: out, closed, answered } = await session(writes, marker);
        const errors = errorsIn(out, input);
        const fatal = errors.find((e) => e.fatal);
        if (fatal) {
          assert.equal(out.at(-1)?.type, 'E', `messages after a FATAL for ${input}`);
          assert.ok(closed && !answered, `the connection went on after a FATAL: ${input}`);
        } else if (!answered) {
          // Only a Terminate ends a connection without a word.
          assert.ok(messages.some((m) => m[0] === 0x58 && m.length === 5 && m.readUInt32BE(1) === 4), `the connection ended without an answer or a FATAL: ${input}`);
        }
        assertQuietServer(input);
        const refused = [...new Set(errors.filter((e) => !e.message.includes(marker)).map((e) => `${e.fatal ? 'FATAL' : 'ERROR'} ${e.code}`))].sort();
        tally.add(fatal ? `ended by FATAL ${fatal.code}` : answered ? (refused.length ? `answered, with ${refused.join(' + ')}` : 'answered') : 'ended by Terminate', bytes.length);
      }),
      // No shrinking: each try of a failing case may wait for a deadline; the first counterexample is reported.
      { seed, numRuns, includeErrorInReport: true, endOnFailure: true },
    );
    tally.print(numRuns);
  });

  test('a session split at every byte boundary, its login messages too, gets the answers it gets in one piece', { timeout: fuzzTestTimeout }, async () => {
    const stream = Buffer.concat([
      serialize.query("set client_encoding to 'UTF8'"),
      serialize.query(''),
      serialize.query('not an API request'),
      serialize.query(`pgbg1 1 ${'01'.repeat(128)}\n{"op":"launch","sql":`),
      serialize.query(`pgbg1 2 ${'10'.repeat(128)}\n{"op":"list"}`),
      serialize.parse({ text: 'SELECT $1', types: [23] }), serialize.bind({ values: ['1'] }), serialize.describe({ type: 'P' }), serialize.execute({}), serialize.sync(),
      serialize.flush(),
      serialize.copyData(Buffer.from('1\t2\n')), serialize.copyDone(), serialize.copyFail('no'),
      message(0x46, Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0])),
      message(Q, Buffer.alloc(MAX_REQUEST_BYTES + 10, 0x41)),
      serialize.query('é 😀 and after the big one'),
    ]);
    const reference = await session([stream], 'pgbg_split');
    assert.ok(reference.answered, 'the reference session was answered');
    const expected = reference.messages.map((m) => `${m.type} ${m.type === 'E' ? fieldsOf(m.body).C : ''}`);
    const tally = new Tally('wire, one session split at every byte boundary');
    // Every boundary is a cut in one session of each stride (1 is byte by byte), among different other cuts.
    const strides = [1, 7, 31];
    let sessions = 0;
    for (const stride of strides) {
      for (let phase = 0; phase < stride; phase++) {
        const offsets = Array.from({ length: Math.ceil(stream.length / stride) }, (_, i) => phase + i * stride);
        const split = (b: Buffer) => cut(b, offsets.map((o) => o % Math.max(1, b.length)));
        watchdog.current = `the session split every ${stride} bytes from ${phase}`;
        tally.start();
        const got = await session(cut(stream, offsets), 'pgbg_split', split);
        assert.deepEqual(got.messages.map((m) => `${m.type} ${m.type === 'E' ? fieldsOf(m.body).C : ''}`), expected, `split every ${stride} bytes from ${phase}`);
        assertQuietServer(`the split session (stride ${stride}, phase ${phase})`);
        tally.add(`same answers as in one piece (stride ${stride})`, stream.length);
        sessions++;
      }
    }
    tally.print(sessions);
  });
});

describe('afterwards', () => {
  test('no connection, socket, session or memory of the fuzzing is left, and the server serves ordinary clients', async () => {
    // Connections close asynchronously after their sockets: wait for them, boundedly.
    for (let i = 0; i < 500 && (wire.connections() > 0 || tcpHandles() > baseline.tcp); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(wire.connections(), 0, 'connections left open');
    assert.ok(tcpHandles() <= baseline.tcp, `TCP sockets: ${tcpHandles()}, ${baseline.tcp} before the fuzzing`);
    assert.equal(api.handler.sessionCount, baseline.sessions, 'sessions left over');
    const heap = heapAfterCollection();
    process.stdout.write(`# fuzz wire, afterwards: heap ${Math.round(baseline.heap / MB)} MB before the fuzzing, ${Math.round(heap / MB)} MB after; ${wire.connections()} connections and ${tcpHandles()} TCP sockets open (${baseline.tcp} before)\n`);
    assert.ok(heap - baseline.heap < 32 * MB, `the heap grew by ${Math.round((heap - baseline.heap) / MB)} MB`);

    // node-postgres, logging in to the fuzzed endpoint: the handler answers.
    const client = new pg.Client({ host: '127.0.0.1', port: wire.port, user: who.user, password: who.password, database: who.database });
    await client.connect();
    await client.query("SET client_encoding TO 'UTF8'");
    await assert.rejects(client.query('select 1'), { code: '0A000', message: /accepts only pgbg SQL API requests/ });
    await client.end();
    // The SQL API through dblink, on the same handler and engine.
    const caller = new pg.Client({ connectionString: api.callerUrl });
    await caller.connect();
    try {
      const r = await caller.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT 42')) AS (x int)");
      assert.deepEqual(r.rows, [{ x: 42 }]);
    } finally {
      await caller.end();
    }
    assertQuietServer('ordinary clients');
  });
});
