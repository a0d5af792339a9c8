/**
 * The engine's bounds against a real PostgreSQL: the notices one job may keep,
 * one login's share of the worker pool, and one login's memory budget for
 * queued results.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { useFixture } from '../helpers/engine.js';
import type { Notice } from '../../src/index.js';

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
