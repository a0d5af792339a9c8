import { DataRowSplitter } from '../../src/workers/data-row-splitter.js';
import { decodeDataRow, encodeDataRow, splitRowRun } from '../../src/protocol/data-row.js';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CookieIssuer, cookiesEqual, parseCookie } from '../../src/engine/cookie.js';
import { Job, COMMAND_TAG_FIELD } from '../../src/engine/job.js';
import { parseMemorySetting, parseTimeSetting, resolveQueueSize } from '../../src/engine/limits.js';
import { ResultTracker } from '../../src/engine/result-tracker.js';
import { withDeadline } from '../../src/workers/with-deadline.js';
import { makeLogin } from '../../src/workers/pool.js';
import { LoginBudgets, QUEUE_BYTES_PER_LOGIN } from '../../src/engine/budget.js';
import { PgbgError } from '../../src/protocol/errors.js';

const field = (name: string) => ({ name, dataTypeID: 23, dataTypeSize: 4, dataTypeModifier: -1, tableID: 0, columnID: 0 });

describe('cookies', () => {
  test('positive 63-bit, never repeated across 100,000 draws', () => {
    const issuer = new CookieIssuer();
    const seen = new Set<bigint>();
    for (let i = 0; i < 100_000; i++) {
      const c = issuer.next();
      assert.ok(c > 0n && c < 2n ** 63n);
      assert.ok(!seen.has(c));
      seen.add(c);
    }
    console.log(`cookies: ${seen.size} distinct draws`);
  });
  test('two issuers (two keys) give unrelated sequences', () => {
    const a = new CookieIssuer();
    const b = new CookieIssuer();
    assert.notEqual(a.next(), b.next());
  });
  test('constant-time equality and parsing', () => {
    assert.ok(cookiesEqual(5n, 5n));
    assert.ok(!cookiesEqual(5n, 6n));
    assert.equal(parseCookie('9223372036854775807'), 2n ** 63n - 1n);
    assert.equal(parseCookie('9223372036854775808'), undefined);
    assert.equal(parseCookie('x'), undefined);
  });
});

describe('limits', () => {
  test('queue size: 0 means the default; bounds give 22023', () => {
    assert.equal(resolveQueueSize(0, 65536), 65536);
    assert.equal(resolveQueueSize(64, 65536), 64);
    assert.throws(() => resolveQueueSize(63, 65536), { code: '22023', message: 'queue size must be at least 64 bytes' });
    assert.throws(() => resolveQueueSize(256 * 1024 * 1024 + 1, 65536), { code: '22023', message: 'queue size must not exceed 268435456 bytes' });
  });
  test('settings with units', () => {
    assert.equal(parseMemorySetting('64kB', 'q'), 65536);
    assert.equal(parseMemorySetting('1MB', 'q'), 1048576);
    assert.equal(parseTimeSetting('250ms', 't'), 250);
    assert.equal(parseTimeSetting('2s', 't'), 2000);
    assert.equal(parseTimeSetting('0', 't'), 0);
    assert.throws(() => parseTimeSetting('2 fortnights', 't'), { code: '22023' });
  });
});

describe('row runs in the job buffer', () => {
  test('a run counts its rows; takeRows hands out whole runs, about max rows; bytes drive backpressure', () => {
    const job = new Job('SELECT', 4096, false);
    let full = 0;
    let drained = 0;
    job.onFull = () => full++;
    job.onDrain = () => drained++;
    const rows = Array.from({ length: 40 }, (_, i) => encodeDataRow([String(i), 'y'.repeat(100)]));
    const run = Buffer.concat(rows);
    job.pushRow(run, rows.length);
    assert.equal(job.rowsReceived, 40);
    assert.equal(job.bufferedBytes, run.length);
    assert.equal(full, run.length >= 4096 ? 1 : 0, 'full once its bytes reach the queue size');
    for (let i = 0; i < 3; i++) job.pushRow(encodeDataRow([`single ${i}`]));
    assert.equal(job.rowsReceived, 43);
    // At least one whole run, even past max; then single rows up to max.
    assert.deepEqual(job.takeRows(10), [run]);
    assert.equal(drained, full, 'resumed once half the queue was taken');
    const two = job.takeRows(2);
    assert.deepEqual(two.flatMap(splitRowRun).map(decodeDataRow), [['single 0'], ['single 1']]);
    assert.deepEqual(job.takeRows(100).flatMap(splitRowRun).map(decodeDataRow), [['single 2']]);
    assert.equal(job.bufferedBytes, 0);
    assert.deepEqual(job.takeRows(100), []);
  });

  test('a run counts as all its rows against max: 40 rows and one more are 41', () => {
    const job = new Job('SELECT', 1 << 20, false);
    const run = Buffer.concat(Array.from({ length: 40 }, (_, i) => encodeDataRow([String(i)])));
    job.pushRow(run, 40);
    for (let i = 0; i < 2; i++) job.pushRow(encodeDataRow([`single ${i}`]));
    const taken = job.takeRows(41);
    assert.deepEqual(taken.slice(0, 1), [run]);
    assert.deepEqual(taken.slice(1).flatMap(splitRowRun).map(decodeDataRow), [['single 0']]);
    assert.deepEqual(job.takeRows(100).flatMap(splitRowRun).map(decodeDataRow), [['single 1']]);
  });
});

describe('notices kept by a job', () => {
  test('kept up to the byte cap; later ones only counted, in one summary updated in place', () => {
    const job = new Job('x', 4096, false, { maxNoticeBytes: 100 });
    job.pid = 42;
    const heard: string[] = [];
    job.onNotice = (n) => heard.push(n.message);
    job.addNotice({ message: 'a'.repeat(60) });
    job.addNotice({ message: 'b'.repeat(60) });
    const held = job.notices;
    const summary = held[1]!;
    assert.match(summary.message, /^1 more notice of background worker with PID 42 was dropped$/);
    // A small one after the first drop is dropped too: the summary stays last.
    job.addNotice({ message: 'c' });
    assert.deepEqual(job.notices.map((n) => n.message.slice(0, 3)), ['aaa', '2 m']);
    assert.equal(summary.message, '2 more notices of background worker with PID 42 were dropped');
    assert.match(summary.detail ?? '', /at most 1000 notices and 100 bytes of them, within its login's memory budget; the 2 after these \(61 bytes\)/);
    assert.equal(job.noticeBytes, 60);
    assert.equal(job.droppedNotices, 2);
    assert.deepEqual(heard.map((m) => m[0]), ['a', 'b', 'c']);
  });

  test('kept up to 1000 notices, the first ones', () => {
    const job = new Job('x', 4096, false);
    for (let i = 0; i < 1200; i++) job.addNotice({ message: `n${i}` });
    assert.equal(job.notices.length, 1001);
    assert.equal(job.notices[999]!.message, 'n999');
    assert.match(job.notices[1000]!.message, /^200 more notices/);
  });
});

describe('login memory budgets', () => {
  const login = (user: string) => makeLogin({ user, database: 'd', host: 'h', port: 5432, password: 'p' });

  test('a launch takes its queue size; notices draw on the rest; discard gives the queue back, release everything', () => {
    const budgets = new LoginBudgets(10_000);
    const a = login('a');
    const job = new Job('x', 6000, false, { maxNoticeBytes: 10_000 });
    job.chargeTo(budgets.reserve(a, 6000), 6000);
    assert.throws(() => budgets.reserve(a, 4001), (err: PgbgError) => {
      assert.equal(err.code, '53200');
      assert.match(err.message, /memory budget of login "a@d"/);
      assert.match(err.detail ?? '', /hold 6000 bytes .* asks for 4001 more; the budget is 10000 bytes \(maxQueueBytesPerLogin\)/);
      return true;
    });
    assert.equal(budgets.held(login('b')), 0, 'another login has its own');
    job.addNotice({ message: 'n'.repeat(3000) });
    job.addNotice({ message: 'm'.repeat(3000) });
    assert.equal(job.notices[0]!.message.length, 3000);
    assert.match(job.notices[1]!.message, /^1 more notice/, 'the second no longer fits in the budget');
    assert.equal(budgets.held(a), 9000);
    job.discard();
    assert.equal(budgets.held(a), 3000, 'the queue goes back once nothing can fill it');
    job.releaseMemory();
    job.releaseMemory();
    assert.equal(budgets.held(a), 0);
    job.addNotice({ message: 'late' });
    assert.equal(job.notices.length, 2, 'a released job keeps no more notices');
  });

  test('the budget is checked when an engine starts', () => {
    assert.throws(() => new LoginBudgets(0), RangeError);
    assert.equal(new LoginBudgets(QUEUE_BYTES_PER_LOGIN.default).limit, 256 * 1024 * 1024);
  });
});

describe('result tracking (pure, message by message)', () => {
  const drain = (job: Job) => {
    const rows = [];
    for (let r = job.takeRows(1); r.length > 0; r = job.takeRows(1)) rows.push(...r.flatMap(splitRowRun).map(decodeDataRow));
    return rows;
  };

  test('setup statement skipped; only the last statement\'s rows are kept', () => {
    const job = new Job('x', 65536, false);
    const t = new ResultTracker(job, 1, 2);
    t.rowDescription([field('setup')]);
    t.dataRow(encodeDataRow(['ignored']));
    t.commandComplete('SELECT 1');
    t.rowDescription([field('a')]);
    t.dataRow(encodeDataRow(['1']));
    t.commandComplete('SELECT 1');
    t.rowDescription([field('b')]);
    t.dataRow(encodeDataRow(['2']));
    t.dataRow(encodeDataRow(['3']));
    t.commandComplete('SELECT 2');
    assert.deepEqual(job.fields?.map((f) => f.name), ['b']);
    assert.deepEqual(drain(job), [['2'], ['3']]);
    assert.deepEqual(job.commandTags, ['SELECT 2']);
  });

  test('row-less tail after a SELECT yields only the tail\'s tags', () => {
    const job = new Job('x', 65536, false);
    const t = new ResultTracker(job, 0, 3);
    t.rowDescription([field('a')]);
    t.dataRow(encodeDataRow(['1']));
    t.commandComplete('SELECT 1');
    t.commandComplete('INSERT 0 1');
    t.commandComplete('UPDATE 2');
    assert.deepEqual(job.fields, [COMMAND_TAG_FIELD]);
    assert.deepEqual(drain(job), [['INSERT 0 1'], ['UPDATE 2']]);
  });

  test('a full queue asks the worker to pause; reading half of it resumes', () => {
    const job = new Job('x', 4096, false);
    let paused = 0;
    let resumed = 0;
    job.onFull = () => paused++;
    job.onDrain = () => resumed++;
    const t = new ResultTracker(job, 0, 1);
    t.rowDescription([field('a')]);
    for (let i = 0; i < 100; i++) t.dataRow(encodeDataRow(['x'.repeat(100)]));
    assert.equal(paused, 1);
    assert.ok(job.stalled);
    // Rows of the socket read already under way still arrive: 100 rows are buffered.
    while (job.bufferedBytes > 4096 / 2 + 200) job.takeRows(1);
    assert.equal(resumed, 0, 'not resumed while more than half the queue is buffered');
    job.takeRows(1);
    job.takeRows(1);
    assert.equal(resumed, 1);
    assert.ok(!job.stalled);
  });

  test('discarding drops rows and never pauses again', () => {
    const job = new Job('x', 4096, true);
    let paused = 0;
    job.onFull = () => paused++;
    const t = new ResultTracker(job, 0, 1);
    t.rowDescription([field('a')]);
    for (let i = 0; i < 1000; i++) t.dataRow(encodeDataRow(['x'.repeat(100)]));
    assert.equal(paused, 0);
    assert.equal(job.bufferedBytes, 0);
    assert.deepEqual(job.takeRows(Infinity), [], 'no row is buffered');
    assert.equal(job.rowsReceived, 1000);
  });
});

describe('DataRow messages (pure)', () => {
  test('encode and decode round-trip text, empty strings, NULLs and multi-byte text', () => {
    const values = ['1', '', null, 'snow ☃ man', '𝄞'.repeat(3)];
    const row = encodeDataRow(values);
    assert.equal(row[0], 0x44);
    assert.equal(row.readInt32BE(1), row.length - 1);
    assert.deepEqual(decodeDataRow(row), values);
  });

  test('the splitter hands over DataRows and passes everything else, in order, however the bytes are cut', () => {
    const rd = Buffer.from([0x54, 0, 0, 0, 6, 0, 0]); // RowDescription with no fields
    const rows = [encodeDataRow(['a', null]), encodeDataRow(['']), encodeDataRow(['☃'.repeat(40)])];
    const notice = Buffer.concat([Buffer.from([0x4e, 0, 0, 0, 13]), Buffer.from('SNOTICE\0\0')]);
    const cc = Buffer.concat([Buffer.from([0x43, 0, 0, 0, 13]), Buffer.from('SELECT 3\0')]);
    const rfq = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);
    // A notice between rows: it must come out between them.
    const stream = Buffer.concat([rd, rows[0]!, rows[1]!, notice, rows[2]!, cc, rfq]);
    const expected = [
      'pass:' + rd.toString('hex'), 'row:' + rows[0]!.toString('hex'), 'row:' + rows[1]!.toString('hex'),
      'pass:' + notice.toString('hex'), 'row:' + rows[2]!.toString('hex'), 'pass:' + Buffer.concat([cc, rfq]).toString('hex'),
    ];
    let cuts = 0;
    let runsOfSeveral = 0;
    // Every single cut point, and a few two-cut splits: the output must not depend on chunking.
    for (let a = 1; a < stream.length; a++) {
      for (const b of [a, Math.min(stream.length, a + 3), Math.min(stream.length, a + 17)]) {
        const splitter = new DataRowSplitter();
        const out: string[] = [];
        let passed = Buffer.alloc(0);
        const flushPassed = () => {
          if (passed.length) out.push('pass:' + passed.toString('hex'));
          passed = Buffer.alloc(0);
        };
        for (const chunk of [stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)]) {
          splitter.feed(chunk, (bytes) => (passed = Buffer.concat([passed, bytes])), (run, count) => {
            flushPassed();
            const split = splitRowRun(run);
            assert.equal(split.length, count, 'a run holds as many rows as it says');
            if (count > 1) runsOfSeveral++;
            for (const row of split) out.push('row:' + row.toString('hex'));
          });
        }
        flushPassed();
        assert.deepEqual(out, expected, `cut at ${a}/${b}`);
        cuts++;
      }
    }
    assert.ok(cuts > 100, `covered ${cuts} ways to cut the stream`);
    assert.ok(runsOfSeveral > 0, 'consecutive rows within one chunk came as one run');
  });

  test('rows that lie whole in one chunk come as one run; the chunk can be reused as soon as feed returns', () => {
    const rows = Array.from({ length: 50 }, (_, i) => encodeDataRow([String(i), 'x'.repeat(i)]));
    const notice = Buffer.concat([Buffer.from([0x4e, 0, 0, 0, 104]), Buffer.alloc(100, 0x41)]);
    const stream = Buffer.concat([...rows, notice, rows[7]!]);
    // One read buffer for every chunk, as the relay socket reads: cut in three, overwritten after each feed.
    const readBuffer = Buffer.alloc(stream.length);
    const runs: { run: Buffer; count: number }[] = [];
    const passed: Buffer[] = [];
    const splitter = new DataRowSplitter();
    for (const [from, to] of [[0, 1000], [1000, stream.length - 3], [stream.length - 3, stream.length]] as const) {
      const n = stream.copy(readBuffer, 0, from, to);
      splitter.feed(readBuffer.subarray(0, n), (bytes) => passed.push(bytes), (run, count) => runs.push({ run, count }));
      readBuffer.fill(0xff);
    }
    assert.ok(runs[0]!.count > 1, 'complete rows of one chunk came as one run');
    assert.deepEqual(runs.flatMap((r) => splitRowRun(r.run)).map(decodeDataRow), [...rows, rows[7]!].map(decodeDataRow));
    assert.equal(runs.reduce((n, r) => n + r.count, 0), 51);
    assert.deepEqual(Buffer.concat(passed), notice);
  });
});

describe('deadlines', () => {
  test('withDeadline: the value when it comes in time, the fallback when it does not', async () => {
    // withDeadline's timer does not keep the process alive; with nothing else pending, this does.
    const alive = setInterval(() => undefined, 1000);
    try {
      assert.equal(await withDeadline(Promise.resolve(true), 1000, false), true);
      const never = new Promise<boolean>(() => undefined);
      assert.equal(await withDeadline(never, 30, false), false);
      const late = new Promise<string>((resolve) => setTimeout(() => resolve('late'), 200));
      assert.equal(await withDeadline(late, 20, 'fallback'), 'fallback');
    } finally {
      clearInterval(alive);
    }
  });
});

describe('a cancel and the rows of a job', () => {
  const running = (queueSize: number) => {
    const job = new Job('SELECT', queueSize, false);
    job.assignWorker(4242);
    job.start();
    return job;
  };

  test('rows stay while the queue has room: a cancel that comes too late leaves the result whole', () => {
    const job = running(4096);
    job.pushRow(encodeDataRow(['a']));
    job.requestCancel();
    job.discardOnceFull();
    job.pushRow(encodeDataRow(['b']));
    job.finish('stopped'); // the job had committed before the cancel reached it
    assert.equal(job.failure, undefined);
    assert.deepEqual(job.takeRows(10).flatMap(splitRowRun).map(decodeDataRow), [['a'], ['b']]);
  });

  test('once the queue is full they go (so the backend sees the cancel), and reading fails with 55000 instead of returning fewer rows', () => {
    const job = running(64);
    job.pushRow(encodeDataRow(['first']));
    job.requestCancel();
    job.discardOnceFull();
    job.pushRow(encodeDataRow(['x'.repeat(100)]));
    assert.equal(job.bufferedBytes, 0, 'nothing held back the backend');
    job.finish('stopped');
    assert.equal(job.failure?.code, '55000');
    assert.match(job.failure?.message ?? '', /results for PID 4242 were dropped by a cancel/);
  });

  test('a queue already full when the cancel comes is emptied at once', () => {
    const job = running(64);
    let drained = 0;
    job.onDrain = () => drained++;
    job.pushRow(encodeDataRow(['y'.repeat(100)]));
    job.requestCancel();
    job.discardOnceFull();
    assert.equal(job.bufferedBytes, 0);
    assert.equal(drained, 1, 'the paused worker resumed');
    job.finish('canceled', new PgbgError('57014', 'canceling statement due to user request'));
    assert.equal(job.failure?.code, '57014');
  });
});
