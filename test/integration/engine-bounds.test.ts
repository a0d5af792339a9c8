/**
 * The engine's bounds against a real PostgreSQL: the notices one job may keep,
 * and one login's memory budget for queued results (its share of the worker
 * pool is in pool.test.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLoginRole, serverUrl, urlFor, withClient } from '../helpers/db.js';
import { useFixture } from '../helpers/engine.js';
import type { Notice, PgbgError } from '../../src/index.js';

const MB = 1024 * 1024;

/** The bytes a job keeps for its notices, counted as the engine counts them. */
function noticeBytes(notices: readonly Notice[]): number {
  let n = 0;
  for (const notice of notices) for (const v of Object.values(notice)) if (typeof v === 'string') n += Buffer.byteLength(v);
  return n;
}

const BIG_NOTICES = `DO $$ BEGIN FOR i IN 1..20 LOOP RAISE NOTICE '%', repeat('x', 200000); END LOOP; END $$`;

describe('notices: bytes kept per job', () => {
  const ctx = useFixture();

  test('20 notices of 200 kB: at most 1 MB is kept, and a last notice says how many were dropped', async () => {
    const { session } = ctx.fx;
    const rssBefore = process.memoryUsage().rss;
    let heard = 0;
    const h = await session.launch(BIG_NOTICES, { onNotice: () => heard++ });
    const r = await session.result(h);
    const kept = r.notices.filter((n) => n.message.startsWith('xxx'));
    process.stdout.write(`# kept ${kept.length} of 20 notices, ${noticeBytes(r.notices)} bytes; RSS ${Math.round(rssBefore / MB)} → ${Math.round(process.memoryUsage().rss / MB)} MB\n`);
    assert.ok(noticeBytes(r.notices) <= MB, `kept ${noticeBytes(r.notices)} bytes of notices`);
    assert.equal(kept.length, 5, 'the first notices that fit are kept whole');
    const last = r.notices.at(-1)!;
    assert.equal(last.severity, 'WARNING');
    assert.match(last.message, /15 more notices of background worker with PID \d+ were dropped/);
    const dropped = Number(/\((\d+) bytes\)/.exec(last.detail ?? '')?.[1]);
    assert.ok(dropped >= 15 * 200_000, `the detail counts the dropped bytes: ${last.detail}`);
    assert.equal(heard, 20, 'onNotice hears of every notice, kept or not');
    assert.equal(r.notices.length, 6);
  });

  test('a job under the cap keeps every notice, and no summary', async () => {
    const { session } = ctx.fx;
    const h = await session.launch(`DO $$ BEGIN FOR i IN 1..3 LOOP RAISE NOTICE 'n%', i; END LOOP; END $$`);
    const r = await session.result(h);
    assert.deepEqual(r.notices.map((n) => n.message), ['n1', 'n2', 'n3']);
  });
});

describe('notices: the cap is an engine option', () => {
  const ctx = useFixture(undefined, { maxNoticeBytesPerJob: 450_000 });

  test('with 450 kB, two of the 200 kB notices are kept', async () => {
    const { session } = ctx.fx;
    const h = await session.launch(BIG_NOTICES);
    const r = await session.result(h);
    assert.equal(r.notices.filter((n) => n.message.startsWith('xxx')).length, 2);
    assert.match(r.notices.at(-1)!.message, /18 more notices/);
    assert.ok(noticeBytes(r.notices) <= 450_000);
  });
});

/** A second login, for what one login must not take from another. */
let other: { name: string; password: string };
before(async () => {
  other = await createLoginRole('pgbg_bounds');
});
after(async () => {
  await withClient(serverUrl(), (c) => c.query(`DROP ROLE IF EXISTS ${other.name}`));
});

function isCode(code: string, ...patterns: RegExp[]) {
  return (err: unknown): boolean => {
    const e = err as PgbgError;
    assert.equal(e.code, code, `unexpected error: ${e.message}`);
    const text = [e.message, e.detail, e.hint].join('\n');
    for (const p of patterns) assert.match(text, p);
    return true;
  };
}

describe('memory budget per login for queued results', () => {
  const ctx = useFixture(undefined, { maxQueueBytesPerLogin: MB });
  const queueSize = 512 * 1024;

  test('unread results hold their queue sizes; a launch beyond the budget fails 53200 naming the login and the limit', async () => {
    const { fx, db } = ctx;
    const s = fx.session;
    const h1 = await s.launch('SELECT 1 AS one', { queueSize });
    const h2 = await s.launch('SELECT 2 AS two', { queueSize });
    // Ended, not read: the rows are still buffered.
    await s.wait(h1);
    await s.wait(h2);
    const refused = isCode('53200', new RegExp(`login "${fx.session.login.label}"`), /1048576 bytes/, /maxQueueBytesPerLogin/);
    await assert.rejects(s.launch('SELECT 3', { queueSize: 4096 }), refused);
    // Every session of the login shares its budget.
    const same = fx.engine.session({ connection: db.url });
    await assert.rejects(same.launch('SELECT 3', { queueSize: 4096 }), refused);
    same.close();
    // Another login has its own.
    const b = fx.engine.session({ connection: urlFor(db.name, other) });
    const hb = await b.launch('SELECT 4 AS four', { queueSize });
    assert.deepEqual((await b.result(hb)).rows, [{ four: 4 }]);
    b.close();
    // Reading a result gives its share back; so does detaching.
    assert.deepEqual((await s.result(h1)).rows, [{ one: 1 }]);
    const h3 = await s.launch('SELECT 3 AS three', { queueSize });
    await assert.rejects(s.launch('SELECT 5', { queueSize: 4096 }), refused);
    s.detach(h2);
    const h5 = await s.launch('SELECT 5 AS five', { queueSize });
    assert.deepEqual((await s.result(h3)).rows, [{ three: 3 }]);
    assert.deepEqual((await s.result(h5)).rows, [{ five: 5 }]);
  });

  test('a submitted job (results discarded) needs no queue; a closed session gives everything back', async () => {
    const { fx, db } = ctx;
    const s = fx.engine.session({ connection: db.url });
    const full = await s.launch('SELECT 1', { queueSize: MB });
    const submitted = await s.submit('SELECT 2', { queueSize: MB });
    await s.wait(submitted);
    await assert.rejects(s.launch('SELECT 3', { queueSize: 4096 }), { code: '53200' });
    await s.wait(full);
    s.close();
    const h = await fx.session.launch('SELECT 6 AS six', { queueSize: MB });
    assert.deepEqual((await fx.session.result(h)).rows, [{ six: 6 }]);
  });
});

describe('memory budget per login: notices draw on it too', () => {
  const ctx = useFixture(undefined, { maxQueueBytesPerLogin: MB });

  test('a job with a 512 kB queue keeps only the notices that fit in the rest of its login\'s 1 MB', async () => {
    const s = ctx.fx.session;
    const h = await s.launch(BIG_NOTICES, { queueSize: 512 * 1024 });
    await s.wait(h);
    // The job's own cap (1 MB) would keep five; the budget has room for two.
    await assert.rejects(s.launch('SELECT 1', { queueSize: 512 * 1024 }), { code: '53200' });
    const r = await s.result(h);
    assert.equal(r.notices.filter((n) => n.message.startsWith('xxx')).length, 2);
    assert.match(r.notices.at(-1)!.message, /18 more notices/);
    // Read: all of it is back.
    const full = await s.launch('SELECT 1 AS one', { queueSize: MB });
    assert.deepEqual((await s.result(full)).rows, [{ one: 1 }]);
  });
});

describe('memory budget per login: the default', () => {
  const ctx = useFixture();

  test('256 MB: one job with the largest queue takes it all until it is read', async () => {
    const s = ctx.fx.session;
    const h = await s.launch('SELECT 1 AS one', { queueSize: 256 * MB });
    await assert.rejects(s.launch('SELECT 2', { queueSize: 4096 }), { code: '53200' });
    assert.deepEqual((await s.result(h)).rows, [{ one: 1 }]);
    const h2 = await s.launch('SELECT 2 AS two', { queueSize: 4096 });
    assert.deepEqual((await s.result(h2)).rows, [{ two: 2 }]);
  });
});
