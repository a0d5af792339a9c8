import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { withClient } from '../helpers/db.js';
import { useFixture } from '../helpers/engine.js';
import { until, untilClientWrite } from '../helpers/activity.js';
import type { Handle } from '../../src/index.js';

describe('backpressure', () => {
  const ctx = useFixture();

  test('a full queue makes the worker wait on its client; reading resumes it; all rows arrive in order', async () => {
    const h = await ctx.fx.session.launch("SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 200000) g", { queueSize: 4096 });
    // Bounded: the worker fills the queue and blocks writing to its socket.
    await untilClientWrite(ctx.db.url, h.pid);
    const job = ctx.fx.session.trackedJob(h).job;
    assert.ok(job.stalled, 'the engine stopped reading the worker socket');
    assert.ok(!job.ended);
    // The engine holds no more than the queue plus one socket read of rows.
    assert.ok(job.bufferedBytes < 4096 + 256 * 1024, `buffered ${job.bufferedBytes} bytes`);
    await assert.rejects(ctx.fx.session.wait(h), { code: '55000' }, 'wait on a stalled job explains instead of hanging');
    let expected = 1;
    for await (const row of ctx.fx.session.rows<{ g: number }>(h)) {
      assert.equal(row.g, expected);
      expected++;
    }
    assert.equal(expected, 200001);
  });

  test('results read after other workers wrote through the shared read buffer are intact', async () => {
    // Every worker socket reads into one buffer: rows kept from one read must not change when later reads
    // (of this job or another) land in it. Eight jobs fill their queues, interleaved, before any is read.
    const jobs = 8;
    const rowsPerJob = 20_000;
    const handles: Handle[] = [];
    for (let j = 0; j < jobs; j++) {
      handles.push(
        await ctx.fx.session.launch(`SELECT g, md5(g::text || '/${j}') AS h FROM generate_series(1, ${rowsPerJob}) g`, { queueSize: 256 * 1024 }),
      );
    }
    // Every job's rows (~1 MB) overflow its queue: each stalls, none can end, before any is read.
    await until(() => handles.every((h) => ctx.fx.session.trackedJob(h).job.stalled), 'every job stalled on its full queue');
    for (const h of handles) {
      const job = ctx.fx.session.trackedJob(h).job;
      assert.ok(job.stalled && !job.ended, `job ${h.pid} stalled, not ended`);
    }
    let checked = 0;
    for (let j = 0; j < jobs; j++) {
      const expected = await withClient(ctx.db.url, (c) =>
        c.query(`SELECT md5(string_agg(g || ':' || md5(g::text || '/${j}'), ',' ORDER BY g)) AS d FROM generate_series(1, ${rowsPerJob}) g`),
      );
      const got: string[] = [];
      for await (const row of ctx.fx.session.rows<{ g: number; h: string }>(handles[j]!, { rowMode: 'object' })) got.push(`${row.g}:${row.h}`);
      assert.equal(got.length, rowsPerJob);
      const digest = await withClient(ctx.db.url, (c) => c.query('SELECT md5($1) AS d', [got.join(',')]));
      assert.equal(digest.rows[0].d, expected.rows[0].d, `job ${j}: rows intact`);
      checked += got.length;
    }
    console.log(`shared read buffer: ${checked} rows of ${jobs} interleaved jobs checked`);
  });

  test('1,000,000 rows stream through a 64 kB queue with bounded engine memory', async () => {
    const h = await ctx.fx.session.launch('SELECT g, md5(g::text) AS h FROM generate_series(1, 1000000) g', { queueSize: 65536 });
    const job = ctx.fx.session.trackedJob(h).job;
    let n = 0;
    let maxBuffered = 0;
    let samples = 0;
    let sum = 0;
    for await (const row of ctx.fx.session.rows<{ g: number; h: string }>(h, { rowMode: 'object' })) {
      n++;
      sum += row.g;
      if (n % 100_000 === 0 && n < 1_000_000) {
        // A slow reader now and then: it waits until the queue is full and the worker blocked on its
        // socket (the rest, over 4 MB, cannot fit in the socket buffers), which is when the bound matters.
        await until(() => job.stalled, `the queue filled after row ${n}`);
        await untilClientWrite(ctx.db.url, h.pid);
        maxBuffered = Math.max(maxBuffered, job.bufferedBytes);
        samples++;
      }
    }
    assert.equal(n, 1_000_000);
    assert.equal(sum, (1_000_000 * 1_000_001) / 2);
    console.log(`1M rows: max buffered ${maxBuffered} bytes in ${samples} samples (queue 65536)`);
    assert.equal(samples, 9);
    assert.ok(maxBuffered >= 65536, 'the queue filled while the reader paused');
    assert.ok(maxBuffered < 65536 + 256 * 1024, `max buffered ${maxBuffered}`);
  });
});

describe('self-deadlock', () => {
  const ctx = useFixture('CREATE TABLE t (id int PRIMARY KEY)');

  test('waiting for a worker blocked by a lock the launcher holds fails with 40P01 naming both pids', async () => {
    await ctx.fx.launcher.query('BEGIN');
    let h;
    try {
      await ctx.fx.launcher.query('LOCK TABLE t IN ACCESS EXCLUSIVE MODE');
      h = await ctx.fx.session.launch('INSERT INTO t VALUES (1)');
      const launcherPid = (ctx.fx.launcher as unknown as { processID: number }).processID;
      const err = await ctx.fx.session.wait(h).then(() => undefined, (e: unknown) => e as { code: string; detail: string });
      assert.equal(err?.code, '40P01');
      assert.match(err?.detail ?? '', new RegExp(`${launcherPid}.*${h.pid}`));
    } finally {
      // Also when the test fails: the shared launcher must not keep the transaction and its lock.
      await ctx.fx.launcher.query('ROLLBACK');
    }
    await ctx.fx.session.wait(h);
    assert.deepEqual((await ctx.fx.session.result(h)).rows, [{ command: 'INSERT 0 1' }]);
  });
});

describe('control queries outside the pool caps', () => {
  const ctx = useFixture('CREATE TABLE t (id int PRIMARY KEY)', { pool: { maxConnectionsPerLogin: 1, acquireTimeoutMs: 20_000 } });

  test('with a one-connection pool, the self-deadlock check and terminate still run', async () => {
    const { fx } = ctx;
    await fx.launcher.query('BEGIN');
    let h;
    try {
      await fx.launcher.query('LOCK TABLE t IN ACCESS EXCLUSIVE MODE');
      h = await fx.session.launch('INSERT INTO t VALUES (1)');
      await assert.rejects(fx.session.wait(h), { code: '40P01' });
      await fx.session.cancel(h);
      assert.equal(fx.session.list().find((j) => j.pid === h!.pid)?.state, 'canceled');
    } finally {
      await fx.launcher.query('ROLLBACK');
    }
    fx.session.detach(h);
  });
});
