/**
 * The wire server's byte layouts, checked against node-postgres' own protocol
 * parser (an independent implementation) and against hand-built packets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import {
  backendKeyData,
  classifyInitialPacket,
  commandComplete,
  dataRow,
  emptyQueryResponse,
  errorResponse,
  negotiateProtocolVersion,
  noticeResponse,
  parameterStatus,
  readQueryText,
  readStartupParameters,
  readyForQuery,
  rowDescription,
  secretKeysMatch,
  StartupLengthGuard,
} from '../../src/server/wire-messages.js';

/**
 * Parses `chunks` in order with one Parser, like bytes arriving from a socket.
 * Each chunk is copied first: the Parser compacts leftovers inside the buffer
 * it was handed, which would corrupt a shared fixture.
 */
function parseChunks(chunks: Buffer[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const parser = new Parser();
  for (const c of chunks) {
    parser.parse(Buffer.from(c), (msg: BackendMessage) => {
      // Error.message is not enumerable, so spread misses it.
      out.push({ ...msg, ...('message' in msg ? { message: msg.message } : {}) });
    });
  }
  return out;
}

const conversation = Buffer.concat([
  parameterStatus('server_version', '18.0 (pgbg)'),
  backendKeyData(4242, Buffer.from([0xde, 0xad, 0xbe, 0xef])),
  readyForQuery('I'),
  rowDescription([
    { name: 'a', typeOid: 23 },
    { name: 'ünï', typeOid: 25 },
  ]),
  dataRow(['1', null]),
  dataRow(['', 'snow ☃ man']),
  commandComplete('SELECT 2'),
  noticeResponse({ severity: 'WARNING', code: '01000', message: 'careful', detail: 'd' }),
  emptyQueryResponse(),
  errorResponse({
    severity: 'ERROR',
    code: '22023',
    message: 'bad\0thing',
    detail: 'the detail',
    hint: 'the hint',
    position: '7',
    where: 'here',
    schema: 's',
    table: 't',
    column: 'c',
    dataType: 'int4',
    constraint: 'k',
  }),
  readyForQuery('I'),
]);

test('backend messages decode as node-postgres reads them', () => {
  const msgs = parseChunks([conversation]);
  assert.deepEqual(
    msgs.map((m) => m.name),
    ['parameterStatus', 'backendKeyData', 'readyForQuery', 'rowDescription', 'dataRow', 'dataRow', 'commandComplete', 'notice', 'emptyQuery', 'error', 'readyForQuery'],
  );
  assert.equal(msgs[0]!.parameterValue, '18.0 (pgbg)');
  assert.equal(msgs[1]!.processID, 4242);
  assert.equal(msgs[1]!.secretKey, 0xdeadbeef | 0);
  assert.equal(msgs[2]!.status, 'I');
  const fields = msgs[3]!.fields as { name: string; dataTypeID: number; format: string }[];
  assert.deepEqual(
    fields.map((f) => [f.name, f.dataTypeID, f.format]),
    [
      ['a', 23, 'text'],
      ['ünï', 25, 'text'],
    ],
  );
  assert.deepEqual(msgs[4]!.fields, ['1', null]);
  assert.deepEqual(msgs[5]!.fields, ['', 'snow ☃ man']);
  assert.equal(msgs[6]!.text, 'SELECT 2');
  assert.deepEqual(
    [msgs[7]!.severity, msgs[7]!.code, msgs[7]!.message, msgs[7]!.detail],
    ['WARNING', '01000', 'careful', 'd'],
  );
  const e = msgs[9]!;
  assert.equal(e.message, 'badthing', 'a NUL inside a field is dropped, not sent');
  assert.deepEqual(
    [e.code, e.detail, e.hint, e.position, e.where, e.schema, e.table, e.column, e.dataType, e.constraint],
    ['22023', 'the detail', 'the hint', '7', 'here', 's', 't', 'c', 'int4', 'k'],
  );
});

test('the same bytes split at every boundary decode identically', () => {
  const whole = parseChunks([conversation]);
  for (let at = 1; at < conversation.length; at++) {
    const split = parseChunks([conversation.subarray(0, at), conversation.subarray(at)]);
    assert.deepEqual(split, whole, `split at byte ${at}`);
  }
  // And one byte at a time.
  const bytes = Array.from(conversation, (b) => Buffer.from([b]));
  assert.deepEqual(parseChunks(bytes), whole);
});

test('backendKeyData only takes protocol 3.0 keys', () => {
  assert.throws(() => backendKeyData(1, Buffer.alloc(8)), RangeError);
});

test('negotiateProtocolVersion lists the ignored options', () => {
  const m = negotiateProtocolVersion(3, 0, ['_pq_.a', '_pq_.b']);
  const expected = Buffer.concat([
    Buffer.from([0x76, 0, 0, 0, 4 + 4 + 4 + 7 + 7]),
    Buffer.from([0, 3, 0, 0, 0, 0, 0, 2]),
    Buffer.from('_pq_.a\0_pq_.b\0'),
  ]);
  assert.deepEqual(m, expected);
});

test('first packets are told apart', () => {
  assert.deepEqual(classifyInitialPacket(serialize.requestSsl()), { kind: 'ssl' });
  const gss = Buffer.alloc(8);
  gss.writeInt32BE(8, 0);
  gss.writeInt32BE(80877104, 4);
  assert.deepEqual(classifyInitialPacket(gss), { kind: 'gssenc' });
  assert.deepEqual(classifyInitialPacket(serialize.cancel(77, -2)), {
    kind: 'cancel',
    processId: 77,
    secretKey: Buffer.from([0xff, 0xff, 0xff, 0xfe]),
  });
  assert.deepEqual(classifyInitialPacket(serialize.startup({ user: 'u', database: 'd' })), {
    kind: 'startup',
    major: 3,
    minor: 0,
  });
  // A 3.2 startup (libpq's max_protocol_version=3.2) with a protocol extension option.
  const v32 = Buffer.from(serialize.startup({ user: 'u', '_pq_.x': '1' }));
  v32.writeInt16BE(2, 6);
  assert.deepEqual(classifyInitialPacket(v32), { kind: 'startup', major: 3, minor: 2 });
  assert.deepEqual(readStartupParameters(v32), { user: 'u', '_pq_.x': '1', client_encoding: 'UTF8' });
});

test('malformed first packets are invalid', () => {
  assert.equal(classifyInitialPacket(Buffer.from([0, 0, 0, 4])).kind, 'invalid');
  const lying = Buffer.from(serialize.requestSsl());
  lying.writeInt32BE(9, 0);
  assert.equal(classifyInitialPacket(lying).kind, 'invalid', 'length field must match');
  const v2 = Buffer.from(serialize.startup({ user: 'u' }));
  v2.writeInt16BE(2, 4);
  assert.equal(classifyInitialPacket(v2).kind, 'invalid', 'protocol 2 is not spoken');
  // A view into a larger buffer (byteOffset ≠ 0) is read from its own start.
  const padded = Buffer.concat([Buffer.from('xxxx'), serialize.requestSsl()]).subarray(4);
  assert.equal(classifyInitialPacket(padded).kind, 'ssl');
});

test('Query text is read up to its NUL, as UTF-8', () => {
  assert.equal(readQueryText(serialize.query('select ☃; select 2')), 'select ☃; select 2');
  assert.equal(readQueryText(serialize.query('')), '');
  const noNul = Buffer.from(serialize.query('x')).subarray(0, -1);
  noNul.writeInt32BE(noNul.length - 1, 1);
  assert.equal(readQueryText(noNul), undefined);
  const wrongLength = Buffer.from(serialize.query('abc'));
  wrongLength.writeInt32BE(99, 1);
  assert.equal(readQueryText(wrongLength), undefined);
  assert.equal(readQueryText(serialize.sync()), undefined);
});

test('secret keys compare by value and length', () => {
  const k = Buffer.from([1, 2, 3, 4]);
  assert.equal(secretKeysMatch(k, Buffer.from([1, 2, 3, 4])), true);
  assert.equal(secretKeysMatch(k, Buffer.from([1, 2, 3, 5])), false);
  assert.equal(secretKeysMatch(k, Buffer.from([1, 2, 3])), false);
});

test('the startup guard follows SSL/GSS requests into the startup packet, in any chunking', () => {
  const gss = Buffer.alloc(8);
  gss.writeInt32BE(8, 0);
  gss.writeInt32BE(80877104, 4);
  const good = Buffer.concat([gss, serialize.requestSsl(), serialize.startup({ user: 'u' }), serialize.query('x'.repeat(20_000))]);
  for (let at = 0; at <= 40; at++) {
    const g = new StartupLengthGuard();
    assert.equal(g.accept(good.subarray(0, at)), true, `split at ${at}`);
    assert.equal(g.accept(good.subarray(at)), true, `split at ${at}`);
  }
  const bytewise = new StartupLengthGuard();
  for (const b of good.subarray(0, 60)) assert.equal(bytewise.accept(Buffer.from([b])), true);
});

test('the startup guard rejects impossible first lengths as soon as it sees them', () => {
  assert.equal(new StartupLengthGuard().accept(Buffer.from('GET / HTTP/1.1\r\n')), false);
  const g = new StartupLengthGuard();
  assert.equal(g.accept(serialize.requestSsl()), true);
  assert.equal(g.accept(Buffer.from([0, 0, 0x27])), true, 'not enough bytes to judge yet');
  assert.equal(g.accept(Buffer.from([0x11])), false, '10001 bytes is over the startup limit');
  const tiny = Buffer.alloc(4);
  tiny.writeInt32BE(4, 0);
  assert.equal(new StartupLengthGuard().accept(tiny), false);
});
