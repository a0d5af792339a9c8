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
  InboundFramer,
  OVERSIZED_MESSAGE,
  readOversizedMarker,
  type InboundLimits,
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

const LIMITS: InboundLimits = { preAuthBytes: 64 * 1024, requestBytes: 1024 * 1024 };
/** A framer, and `accept`: feeds a chunk, true unless the framer refused the connection. */
function framer(authenticated = () => false, limits = LIMITS) {
  const f = new InboundFramer(limits, authenticated);
  return { f, accept: (chunk: Uint8Array) => f.feed(chunk).refusal === undefined };
}
/** Feeds `chunks` and returns everything handed on, concatenated (or the refusal). */
function framed(f: InboundFramer, chunks: Uint8Array[]) {
  const out: Buffer[] = [];
  for (const c of chunks) {
    const r = f.feed(c);
    if (r.refusal) return r.refusal;
    assert.equal(r.bytes.byteOffset, 0, 'handed on at offset 0');
    assert.equal(r.bytes.buffer.byteLength, r.bytes.byteLength, 'in a buffer of its own');
    out.push(Buffer.from(r.bytes));
  }
  return Buffer.concat(out);
}

test('the framer follows SSL/GSS requests into the startup packet, in any chunking', () => {
  const gss = Buffer.alloc(8);
  gss.writeInt32BE(8, 0);
  gss.writeInt32BE(80877104, 4);
  const good = Buffer.concat([gss, serialize.requestSsl(), serialize.startup({ user: 'u' }), serialize.query('x'.repeat(20_000))]);
  for (let at = 0; at <= 40; at++) {
    const { accept } = framer(() => true);
    assert.equal(accept(good.subarray(0, at)), true, `split at ${at}`);
    assert.equal(accept(good.subarray(at)), true, `split at ${at}`);
  }
  const bytewise = framer(() => true);
  for (const b of good.subarray(0, 60)) assert.equal(bytewise.accept(Buffer.from([b])), true);
  // Everything passes unchanged, whatever the chunking.
  for (const size of [1, 7, 4096, good.length]) {
    const chunks: Buffer[] = [];
    for (let at = 0; at < good.length; at += size) chunks.push(good.subarray(at, at + size));
    const f = new InboundFramer(LIMITS, () => true);
    assert.deepEqual(framed(f, chunks), good, `chunks of ${size}`);
    assert.equal(f.forwarded, good.length);
  }
});

test('the framer rejects impossible first lengths as soon as it sees them', () => {
  assert.equal(framer().accept(Buffer.from('GET / HTTP/1.1\r\n')), false);
  const { f, accept } = framer();
  assert.equal(accept(serialize.requestSsl()), true);
  assert.equal(accept(Buffer.from([0, 0, 0x27])), true, 'not enough bytes to judge yet');
  assert.equal(accept(Buffer.from([0x11])), false, '10001 bytes is over the startup limit');
  assert.deepEqual(f.feed(Buffer.from([1])).refusal, { kind: 'not-postgres' }, 'and it stays refused');
  const tiny = Buffer.alloc(4);
  tiny.writeInt32BE(4, 0);
  assert.equal(framer().accept(tiny), false);
});

test('before authentication, a message over the limit is refused from its header alone', () => {
  const startup = serialize.startup({ user: 'u' });
  const header = Buffer.from([0x70, 0x7f, 0xff, 0xff, 0xff]); // 'p', 2 GB
  const f = new InboundFramer(LIMITS, () => false);
  assert.deepEqual(framed(f, [startup, header.subarray(0, 3)]), startup, 'not judged before the length is in');
  assert.deepEqual(f.feed(header.subarray(3)).refusal, { kind: 'too-long', type: 0x70, length: 0x7fffffff, limit: 64 * 1024 });
  assert.equal(f.forwarded, startup.length, 'nothing of it was handed on');
  // At the limit it passes.
  const atLimit = Buffer.alloc(1 + 64 * 1024);
  atLimit[0] = 0x70;
  atLimit.writeInt32BE(64 * 1024, 1);
  const g = new InboundFramer(LIMITS, () => false);
  assert.deepEqual(framed(g, [startup, atLimit]), Buffer.concat([startup, atLimit]));
  // A length below its own 4 bytes is invalid, before and after authentication.
  for (const auth of [false, true]) {
    const h = new InboundFramer(LIMITS, () => auth);
    assert.deepEqual(framed(h, [startup, Buffer.from([0x51, 0, 0, 0, 3])]), { kind: 'invalid-length', length: 3 });
  }
});

test('after authentication, an oversized message becomes a marker and its body is skipped', () => {
  const startup = serialize.startup({ user: 'u' });
  const big = serialize.query('y'.repeat(2 * 1024 * 1024));
  const after = serialize.query('select 1');
  const stream = Buffer.concat([startup, big, after, serialize.sync()]);
  for (const size of [1000, 65536, stream.length]) {
    const chunks: Buffer[] = [];
    for (let at = 0; at < stream.length; at += size) chunks.push(stream.subarray(at, at + size));
    const f = new InboundFramer(LIMITS, () => true);
    const out = framed(f, chunks) as Buffer;
    const marker = out.subarray(startup.length, startup.length + 10);
    assert.equal(marker[0], OVERSIZED_MESSAGE);
    assert.deepEqual(readOversizedMarker(marker), { type: 0x51, length: big.length - 1 });
    assert.deepEqual(out.subarray(startup.length + 10), Buffer.concat([after, serialize.sync()]), `chunks of ${size}: the stream stays in step`);
    assert.equal(f.skipped, big.length - 5);
    assert.equal(f.forwarded, out.length);
  }
  // The limit is the one in force when the header arrives.
  let auth = false;
  const f = new InboundFramer({ preAuthBytes: 64 * 1024, requestBytes: 128 * 1024 }, () => auth);
  framed(f, [startup]);
  auth = true;
  const mid = serialize.query('z'.repeat(100 * 1024));
  assert.deepEqual(framed(f, [mid]), mid, 'over the pre-authentication limit but under the request limit');
});
