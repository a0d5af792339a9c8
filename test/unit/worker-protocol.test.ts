/**
 * The worker connection's state machine, fed backend messages cut every way:
 * a job's replies end at its ReadyForQuery and the pipelined reset's after it,
 * errors are kept, and anything that leaves the connection's state unknown
 * (loss, FATAL, COPY, a message out of place) breaks it for good.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkerProtocol, type ResultSink, type RunOutcome } from '../../src/workers/worker-protocol.js';

const message = (type: string, body: Buffer | string) => {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeInt32BE(b.length + 4, 1);
  return Buffer.concat([header, b]);
};
const commandComplete = (tag: string) => message('C', `${tag}\0`);
const ready = (status = 'I') => message('Z', status);
const errorResponse = (severity: string, code: string, text: string) => message('E', `S${severity}\0V${severity}\0C${code}\0M${text}\0\0`);
const canceled = errorResponse('ERROR', '57014', 'canceling statement due to user request');
const notice = message('N', 'SNOTICE\0C00000\0Mhello\0\0');
const backendKey = () => {
  const b = Buffer.alloc(8);
  b.writeInt32BE(4242, 0);
  b.writeInt32BE(-17, 4);
  return message('K', b);
};
const rowDescription = (name: string) => {
  const b = Buffer.alloc(2 + name.length + 1 + 18);
  b.writeInt16BE(1, 0);
  b.write(`${name}\0`, 2);
  b.writeInt32BE(25, 2 + name.length + 1 + 6); // type OID text
  b.writeInt16BE(-1, 2 + name.length + 1 + 10);
  return message('T', b);
};
const dataRow = (value: string) => {
  const b = Buffer.alloc(2 + 4 + value.length);
  b.writeInt16BE(1, 0);
  b.writeInt32BE(value.length, 2);
  b.write(value, 6);
  return message('D', b);
};
const copyOut = message('H', Buffer.from([0, 0, 0]));

interface Harness {
  protocol: WorkerProtocol;
  written: Buffer[];
  destroyed: () => boolean;
  feed(stream: Buffer, cut: number): void;
}

function loggedIn(): Harness {
  const written: Buffer[] = [];
  let destroyed = false;
  const protocol = new WorkerProtocol({ write: (b) => void written.push(b), destroy: () => void (destroyed = true) });
  const feed = (stream: Buffer, cut: number) => {
    for (let i = 0; i < stream.length; i += cut) protocol.receive(Buffer.from(stream.subarray(i, i + cut)));
  };
  feed(Buffer.concat([message('R', Buffer.alloc(4)), message('S', 'TimeZone\0UTC\0'), backendKey(), ready()]), 3);
  return { protocol, written, destroyed: () => destroyed, feed };
}

function recordingSink(): ResultSink & { seen: string[] } {
  const seen: string[] = [];
  return {
    seen,
    rowDescription: (fields) => void seen.push(`fields:${fields.map((f) => f.name).join(',')}`),
    dataRow: (_run, count = 1) => void seen.push(`rows:${count}`),
    commandComplete: (tag) => void seen.push(`complete:${tag}`),
    emptyQuery: () => void seen.push('empty'),
  };
}

/** Runs a job whose replies (and the reset's after them) arrive as `stream`, cut every `cut` bytes. */
async function job(stream: Buffer, cut: number): Promise<{ h: Harness; outcome: RunOutcome; reset: boolean; seen: string[]; notices: number }> {
  const h = loggedIn();
  const sink = recordingSink();
  let notices = 0;
  const running = h.protocol.run('SELECT 1', sink, () => void notices++);
  assert.equal(h.protocol.state, 'running');
  h.feed(stream, cut);
  const outcome = await running;
  const reset = await h.protocol.reset();
  return { h, outcome, reset, seen: sink.seen, notices };
}

describe('worker protocol', () => {
  test('the login: BackendKeyData gives pid and secret key, ReadyForQuery makes it idle', () => {
    const { protocol } = loggedIn();
    assert.equal(protocol.state, 'idle');
    assert.equal(protocol.pid, 4242);
    assert.equal(protocol.secretKey, -17);
  });

  test('the job and the reset go out in one write; the reset\'s replies are consumed in state resetting', async () => {
    let cases = 0;
    for (const cut of [1, 2, 3, 5, 7, 64]) {
      const ok = await job(Buffer.concat([notice, commandComplete('INSERT 0 1'), ready(), commandComplete('DISCARD ALL'), ready()]), cut);
      assert.deepEqual(ok.outcome, { lost: false, txStatus: 'I' });
      assert.deepEqual(ok.seen, ['complete:INSERT 0 1'], 'the reset\'s CommandComplete is not the job\'s');
      assert.equal(ok.notices, 1);
      assert.equal(ok.reset, true);
      assert.equal(ok.h.protocol.state, 'idle');
      assert.equal(ok.h.written.length, 1, 'one write');
      assert.match(ok.h.written[0]!.toString('latin1'), /^Q.{4}SELECT 1\0Q.{4}DISCARD ALL\0$/s);

      const resetFailed = await job(Buffer.concat([commandComplete('INSERT 0 1'), ready(), canceled, ready()]), cut);
      assert.deepEqual(resetFailed.outcome, { lost: false, txStatus: 'I' });
      assert.equal(resetFailed.reset, false);
      assert.equal(resetFailed.h.protocol.state, 'idle');

      // A job that failed: its first error is kept, the reset after it still runs.
      const failed = await job(Buffer.concat([canceled, errorResponse('ERROR', '42P01', 'later'), ready(), commandComplete('DISCARD ALL'), ready()]), cut);
      assert.equal(failed.outcome.lost, false);
      assert.equal(failed.outcome.txStatus, 'I');
      assert.equal((failed.outcome.error as { code?: string }).code, '57014');
      assert.equal(failed.outcome.error?.message, 'canceling statement due to user request');
      assert.equal(failed.reset, true);
      cases += 3;
    }
    console.log(`pipelined reset: ${cases} streams checked`);
  });

  test('a FATAL error mid-job: the job ends lost with it, the connection is broken and its reset fails', async () => {
    const r = await job(Buffer.concat([rowDescription('x'), errorResponse('FATAL', '57P01', 'terminating connection due to administrator command')]), 4);
    assert.equal(r.outcome.lost, true);
    assert.equal((r.outcome.error as { code?: string }).code, '57P01');
    assert.equal(r.reset, false);
    assert.equal(r.h.protocol.state, 'broken');
    assert.ok(r.h.destroyed());
    assert.throws(() => r.h.protocol.run('SELECT 1', recordingSink(), () => undefined), { code: 'XX000' });
  });

  test('the connection closing mid-job: lost, with an error; a reset after the job\'s end fails', async () => {
    const h = loggedIn();
    const running = h.protocol.run('SELECT 1', recordingSink(), () => undefined);
    h.protocol.closed();
    const outcome = await running;
    assert.equal(outcome.lost, true);
    assert.equal((outcome.error as { code?: string }).code, '08006');

    const h2 = loggedIn();
    const second = h2.protocol.run('SELECT 1', recordingSink(), () => undefined);
    h2.feed(Buffer.concat([commandComplete('SELECT 1'), ready()]), 64);
    assert.deepEqual(await second, { lost: false, txStatus: 'I' });
    assert.equal(h2.protocol.state, 'resetting');
    h2.protocol.closed();
    assert.equal(await h2.protocol.reset(), false);
  });

  test('COPY: the job fails with 0A000 and the connection is broken, never reused', async () => {
    const r = await job(Buffer.concat([copyOut, message('d', 'x\n'), message('c', ''), commandComplete('COPY 1'), ready()]), 5);
    assert.equal(r.outcome.lost, true);
    assert.equal((r.outcome.error as { code?: string }).code, '0A000');
    assert.equal(r.outcome.error?.message, 'COPY protocol not allowed in pg_background');
    assert.deepEqual(r.seen, []);
    assert.equal(r.reset, false);
    assert.equal(r.h.protocol.state, 'broken');
    assert.ok(r.h.destroyed());
  });

  test('engine SQL: rows by column name; an error rejects and leaves the connection idle', async () => {
    const h = loggedIn();
    const q = h.protocol.query('SELECT oid');
    h.feed(Buffer.concat([rowDescription('oid'), dataRow('10'), dataRow('11'), commandComplete('SELECT 2'), ready()]), 3);
    assert.deepEqual((await q).rows, [{ oid: '10' }, { oid: '11' }]);
    assert.equal(h.protocol.state, 'idle');
    assert.equal(h.written.length, 1);

    const failing = h.protocol.query('SELECT nope');
    h.feed(Buffer.concat([errorResponse('ERROR', '42703', 'column "nope" does not exist'), ready()]), 2);
    await assert.rejects(failing, { code: '42703' });
    assert.equal(h.protocol.state, 'idle');
    // A reset on its own, when no job queued one.
    const reset = h.protocol.reset();
    assert.equal(h.protocol.state, 'resetting');
    h.feed(Buffer.concat([commandComplete('DISCARD ALL'), ready()]), 64);
    assert.equal(await reset, true);
  });

  test('illegal transitions throw; a message out of place breaks the connection', () => {
    const h = loggedIn();
    void h.protocol.query('SELECT 1').catch(() => undefined);
    assert.throws(() => h.protocol.query('SELECT 2'), { code: 'XX000', message: /running to running/ });
    const idle = loggedIn();
    idle.feed(commandComplete('SELECT 1'), 64);
    assert.equal(idle.protocol.state, 'broken');
    // Asynchronous messages are fine while idle.
    const quiet = loggedIn();
    quiet.feed(Buffer.concat([message('S', 'application_name\0x\0'), notice]), 64);
    assert.equal(quiet.protocol.state, 'idle');
  });
});
