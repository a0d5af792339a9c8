/**
 * Memory release after a quiet period: the collection it runs really frees
 * dead buffers, it runs once per quiet period, and activity defers it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fullCollection, MemoryRelease } from '../../src/server/memory-release.js';

const MB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !check(); await sleep(20)) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
  }
}

describe('memory release', () => {
  test('fullCollection frees the backing stores of dead buffers, also old ones', async () => {
    const collect = fullCollection();
    const holder: { buffers: Buffer[] | undefined } = { buffers: [] };
    // 500 × 64 kB, as socket reads allocate them; kept across collections so they are old.
    for (let i = 0; i < 500; i++) holder.buffers!.push(Buffer.allocUnsafeSlow(64 * 1024).fill(i & 0xff));
    collect();
    collect();
    const held = process.memoryUsage().arrayBuffers;
    assert.ok(held >= 30 * MB, `the buffers are counted: ${held}`);
    holder.buffers = undefined;
    collect();
    // The backing stores are freed on a helper thread just after the collection.
    await until(`arrayBuffers back under ${(held - 25 * MB) / MB} MB`, () => process.memoryUsage().arrayBuffers < held - 25 * MB);
  });

  test('runs once after the quiet period, not again while quiet, again after new activity', async () => {
    let activity = 0;
    let releases = 0;
    const r = new MemoryRelease({ quietMs: 100, activity: () => String(activity), release: () => releases++ });
    try {
      await sleep(400);
      assert.equal(releases, 0, 'nothing happened since it started: nothing to release');
      activity++;
      await until('a release after the activity', () => releases === 1);
      await sleep(400);
      assert.equal(releases, 1, 'still quiet: no second release');
      assert.equal(r.releases, 1);
      activity++;
      await until('a release after new activity', () => releases === 2);
    } finally {
      r.stop();
    }
  });

  test('steady activity defers the release until it stops', async () => {
    let activity = 0;
    let releases = 0;
    const r = new MemoryRelease({ quietMs: 150, activity: () => String(activity), release: () => releases++ });
    try {
      // Activity every 20 ms for 600 ms: never quiet for 150 ms.
      for (let i = 0; i < 30; i++) {
        activity++;
        await sleep(20);
      }
      assert.equal(releases, 0, 'released while busy');
      await until('a release once quiet', () => releases === 1);
    } finally {
      r.stop();
    }
  });
});
