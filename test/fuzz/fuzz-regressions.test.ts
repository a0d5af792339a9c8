/**
 * The defects the fuzz tests found, each kept as a plain test with the input
 * that showed it (shrunk by hand where fast-check's was long).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { pino } from 'pino';
import { PgbgError } from '../../src/protocol/errors.js';
import { classifyStatements, isColumnDefinitionList, loadClassifier } from '../../src/sql/classify.js';
import { InboundFramer, saslInitialResponseValid, startupLayoutValid } from '../../src/server/wire-messages.js';
import { startWireServer, type WireServer } from '../../src/server/wire.js';
import { createTestDatabase } from '../helpers/db.js';
import { openFixture } from '../helpers/engine.js';
import { cut, fieldsOf, firstPacket, login, message, parseBackend, RawClient } from './raw-wire.js';

const DEADLINE_MS = 15_000;
const refused = (code: string) => (err: unknown) => err instanceof PgbgError && err.code === code;

describe('the classifier judges the text the server runs', () => {
  before(() => loadClassifier());

  test('a lone surrogate before a 3-byte character no longer hides the end of the text (a COMMIT there)', () => {
    // libpg-query's encoder counted the surrogate as 4 bytes and wrote 3: the text lost its last bytes,
    // failed to parse, and was let through; node-postgres sends U+FFFD and the server ran the COMMIT.
    assert.throws(() => classifyStatements("SELECT '\uD800\u4e00'; COMMIT"), refused('0A000'));
    assert.throws(() => classifyStatements(`SELECT '${'\uD800\u4e00'.repeat(20)}'; INSERT INTO t VALUES (1); COMMIT`), refused('0A000'));
    assert.deepEqual(classifyStatements("SELECT '\uDC00'; SELECT 2"), { statementCount: 2, mustRunAlone: false, parsed: true });
    // A column definition list is judged as sent too: U+FFFD is a letter of an identifier there.
    assert.equal(isColumnDefinitionList('x text, y\uD800 int'), true);
  });

  test('a text with NUL is refused (22021): the parser stopped reading at it', () => {
    assert.throws(() => classifyStatements('SELECT 1\0; COMMIT'), refused('22021'));
    assert.throws(() => classifyStatements('\0'), refused('22021'));
    assert.equal(isColumnDefinitionList('x int\0) AS r(y int'), false);
  });

  test('a parse tree too deep to check is refused (54001), not let through unchecked', async () => {
    // The stack under libpg-query's WASM code ran out (a RangeError), the text went to the server as
    // unparsable, and the server ran the INSERT and the COMMIT before the deep SELECT failed.
    assert.throws(() => classifyStatements(`INSERT INTO t VALUES (1); COMMIT; SELECT 1${'+1'.repeat(10_000)}`), refused('54001'));
    await loadClassifier();
    assert.throws(() => classifyStatements(`SELECT 1${'::int'.repeat(100_000)}`), refused('54001'));
    await loadClassifier();
    // What PostgreSQL's parser itself refuses is still left to the server, which reports it.
    assert.deepEqual(classifyStatements(`COMMIT; SELECT ${'('.repeat(10_000)}1${')'.repeat(10_000)}`), { statementCount: 1, mustRunAlone: false, parsed: false });
    assert.deepEqual(classifyStatements('SELEC 1; COMMIT'), { statementCount: 1, mustRunAlone: false, parsed: false });
  });

  test('texts too deep to check no longer wear the parser out: each failure gets a fresh instance', async () => {
    // After some 28 of these, libpg-query's one instance was corrupted for good: every later text failed
    // to parse ("memory access out of bounds") — and so was let through unchecked, COMMIT and COPY included.
    const deep = `SELECT 1${'::int'.repeat(10_000)}`;
    for (let i = 0; i < 30; i++) {
      assert.throws(() => classifyStatements(deep), refused('54001'));
      await loadClassifier(); // launches wait for the fresh instance here (Engine.ready())
    }
    assert.throws(() => classifyStatements('SELECT 1; COMMIT'), refused('0A000'));
    assert.deepEqual(classifyStatements('SELECT 1; SELECT 2'), { statementCount: 2, mustRunAlone: false, parsed: true });
    assert.equal(isColumnDefinitionList('x int, y text'), true);
  });

  test('while a fresh instance loads, a text is refused with 53000 to retry, not an internal error', async () => {
    assert.throws(() => classifyStatements(`SELECT 1${'::int'.repeat(10_000)}`), refused('54001'));
    assert.throws(() => classifyStatements('SELECT 3'), refused('53000'));
    await loadClassifier();
    assert.equal(classifyStatements('SELECT 3').parsed, true);
  });

  describe('through the engine, against PostgreSQL', () => {
    let db: Awaited<ReturnType<typeof createTestDatabase>>;
    let fx: Awaited<ReturnType<typeof openFixture>>;
    before(async () => {
      db = await createTestDatabase();
      fx = await openFixture(db.url);
      await fx.launcher.query('CREATE TABLE bypass (tag text)');
    });
    after(async () => {
      await fx?.close();
      await db?.drop();
    });

    test('neither text commits anything: both are refused at launch', async () => {
      await assert.rejects(fx.session.launch(`INSERT INTO bypass VALUES ('deep'); COMMIT; SELECT 1${'+1'.repeat(10_000)}`), { code: '54001' });
      await assert.rejects(fx.session.launch(`SELECT '${'\uD800\u4e00'.repeat(20)}'; INSERT INTO bypass VALUES ('surrogate'); COMMIT`), { code: '0A000' });
      await assert.rejects(fx.session.launch("INSERT INTO bypass VALUES ('nul'); SELECT 1\0"), { code: '22021' });
      assert.deepEqual((await fx.launcher.query('SELECT tag FROM bypass')).rows, []);
    });
  });
});

describe('the wire endpoint', () => {
  const USER = 'fuzz_user';
  const PASSWORD = 'fuzz-password';
  let server: WireServer;
  const consoleErrors: string[] = [];
  const consoleError = console.error;
  before(async () => {
    server = await startWireServer({
      handler: { query: () => Promise.resolve({ fields: [{ name: 'one', typeOid: 23 }], rows: [['1']], commandTag: 'SELECT 1' }) },
      authenticate: (user) => (user === USER ? { password: PASSWORD } : undefined),
      logger: pino({ level: 'silent' }),
    });
    console.error = (...args: unknown[]) => void consoleErrors.push(args.map(String).join(' '));
  });
  after(async () => {
    console.error = consoleError;
    await server.close();
  });

  /** Sends `bytes` in one write, then FIN; returns what came back once the server closed. */
  async function exchange(bytes: Buffer): Promise<ReturnType<typeof parseBackend>> {
    const c = await RawClient.connect(server.port);
    await c.write(bytes);
    assert.equal(await c.finish(DEADLINE_MS), 'closed');
    return parseBackend(c.bytes());
  }
  const errors = (out: ReturnType<typeof parseBackend>) => out.messages.filter((m) => m.type === 'E').map((m) => `${fieldsOf(m.body).S} ${fieldsOf(m.body).C} ${fieldsOf(m.body).M}`);
  const startup = (body: string) => firstPacket(0x30000, Buffer.from(body, 'latin1'));
  const cancelRequest = () => {
    const b = Buffer.alloc(8);
    b.writeInt32BE(1234, 0);
    return firstPacket(80877102, b);
  };
  async function ordinaryClientWorks(): Promise<void> {
    const c = new pg.Client({ host: '127.0.0.1', port: server.port, user: USER, password: PASSWORD, database: 'd' });
    await c.connect();
    assert.deepEqual((await c.query('select 1')).rows, [{ one: 1 }]);
    await c.end();
  }

  test('bytes after a CancelRequest no longer freeze the server (pg-gateway framed them as startup packets; one of length 0 looped forever)', async () => {
    // Had the loop come back, this test would not finish: the whole process stops (and the file times out).
    const out = await exchange(Buffer.concat([cancelRequest(), Buffer.from([0, 0, 0, 0, 8, 0, 0, 0, 0])]));
    assert.deepEqual(errors(out), [], 'a CancelRequest is answered with nothing');
    const bad = await exchange(Buffer.concat([firstPacket(0x20000, Buffer.from('user\0u\0\0')), Buffer.from([0, 0, 0, 0, 8, 0, 0, 0, 0])]));
    assert.deepEqual(errors(bad), ['FATAL 08P01 invalid startup packet']);
    await ordinaryClientWorks();
    assert.deepEqual(consoleErrors.splice(0), []);
  });

  test('a startup packet whose parameters are not laid out as PostgreSQL requires gets FATAL 08P01 (pg-gateway threw, printing it)', async () => {
    for (const body of ['user', 'user\0', 'user\0u\0', 'user\0u\0\0\0', 'user\0u\0database']) {
      assert.deepEqual(errors(await exchange(startup(body))), ['FATAL 08P01 invalid startup packet layout: expected terminator as last byte'], JSON.stringify(body));
    }
    assert.deepEqual(consoleErrors.splice(0), []);
  });

  test('a malformed SASLInitialResponse gets FATAL 08P01 (pg-gateway threw a RangeError, printing it)', async () => {
    const len = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeInt32BE(n);
      return b;
    };
    const cases = [
      Buffer.alloc(0),
      Buffer.from([1, 2, 3]),
      Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), len(-1)]),
      Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), len(768), Buffer.from('n,,n=,r=abc')]),
      Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), len(2), Buffer.from('n,,n=,r=abc')]),
    ];
    for (const body of cases) {
      const c = await RawClient.connect(server.port);
      await c.write(serialize.startup({ user: USER, database: 'd' }));
      assert.ok(await c.until((b) => parseBackend(b).messages.some((m) => m.type === 'R'), DEADLINE_MS));
      await c.write(message(0x70, body));
      assert.equal(await c.finish(DEADLINE_MS), 'closed');
      assert.deepEqual(errors(parseBackend(c.bytes())), ['FATAL 08P01 malformed SASL message'], body.toString('hex'));
    }
    assert.deepEqual(consoleErrors.splice(0), []);
  });

  test('a SASLInitialResponse sent with the startup packet is read as one (pg-gateway framed it as a 1.8 GB startup packet and waited)', async () => {
    const c = await RawClient.connect(server.port);
    await c.write(Buffer.concat([serialize.startup({ user: USER, database: 'd' }), serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', 'n,,n=*,r=abcdefgh')]));
    const continued = (b: Buffer) => parseBackend(b).messages.some((m) => m.type === 'R' && m.body.readInt32BE(0) === 11);
    assert.ok(await c.until(continued, DEADLINE_MS), 'AuthenticationSASLContinue');
    assert.match(parseBackend(c.bytes()).messages.find((m) => m.type === 'R' && m.body.readInt32BE(0) === 11)!.body.toString(), /r=abcdefgh/);
    assert.equal(await c.finish(DEADLINE_MS), 'closed');
    // The same with the SSLRequest in front: the user is read from the startup packet, not from the bytes before it.
    const d = await RawClient.connect(server.port);
    await d.write(Buffer.concat([firstPacket(80877103), serialize.startup({ user: USER, database: 'd' }), serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', 'n,,n=*,r=ijklmnop')]));
    assert.ok(await d.until(continued, DEADLINE_MS));
    assert.equal(await d.finish(DEADLINE_MS), 'closed');
    assert.deepEqual(consoleErrors.splice(0), []);
  });

  test('a message of type 0 after login is refused as no frontend message (it passed for the framer\'s own marker, and a short one threw)', async () => {
    for (const body of [Buffer.alloc(0), Buffer.from([0x51]), Buffer.from([0x51, 0, 0, 0, 9])]) {
      const c = await RawClient.connect(server.port);
      const start = await login(c, { user: USER, password: PASSWORD, database: 'd' }, DEADLINE_MS);
      await c.writeAll(cut(Buffer.concat([message(0x00, body), serialize.query('select 1')]), [3]));
      assert.equal(await c.finish(DEADLINE_MS), 'closed');
      assert.deepEqual(errors(parseBackend(c.bytes().subarray(start))), ['FATAL 08P01 invalid frontend message type 0'], body.toString('hex'));
    }
    await ordinaryClientWorks();
    assert.deepEqual(consoleErrors.splice(0), []);
  });
});

describe('the checks behind those fixes', () => {
  test('startupLayoutValid: name/value pairs, then one NUL as the last byte', () => {
    const packet = (body: string) => firstPacket(0x30000, Buffer.from(body, 'latin1'));
    for (const ok of ['\0', 'user\0u\0\0', 'user\0\0\0', 'a\0b\0c\0d\0\0']) assert.equal(startupLayoutValid(packet(ok)), true, JSON.stringify(ok));
    for (const bad of ['', 'user', 'user\0', 'user\0u\0', 'user\0u\0\0\0', '\0\0', 'user\0u']) assert.equal(startupLayoutValid(packet(bad)), false, JSON.stringify(bad));
  });

  test('saslInitialResponseValid: mechanism, length, exactly that many bytes', () => {
    assert.equal(saslInitialResponseValid(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', 'n,,n=*,r=x')), true);
    assert.equal(saslInitialResponseValid(message(0x70, Buffer.from('SCRAM-SHA-256\0\0\0\0\0'))), true, 'no data');
    for (const bad of ['', 'SCRAM', 'SCRAM-SHA-256\0', 'SCRAM-SHA-256\0\0\0\0\x01', 'SCRAM-SHA-256\0\xff\xff\xff\xff', 'SCRAM-SHA-256\0\0\0\0\0x']) {
      assert.equal(saslInitialResponseValid(message(0x70, Buffer.from(bad, 'latin1'))), false, JSON.stringify(bad));
    }
  });

  test('the framer says where each message starts, so that each reaches pg-gateway in a chunk of its own', () => {
    const f = new InboundFramer({ preAuthBytes: 65536, requestBytes: 1024 * 1024 }, () => false);
    const ssl = firstPacket(80877103);
    const start = serialize.startup({ user: 'u' });
    const first = serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', 'n,,n=*,r=x');
    const r = f.feed(Buffer.concat([ssl, start, first.subarray(0, 7)]));
    assert.ok(!r.refusal);
    assert.deepEqual(r.starts, [ssl.length, ssl.length + start.length]);
    const rest = f.feed(first.subarray(7));
    assert.ok(!rest.refusal);
    assert.deepEqual(rest.starts, [], 'the rest of a message starts nothing');
  });
});
