import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { withClient } from '../helpers/db.js';
import { sleep, useFixture } from '../helpers/engine.js';

describe('backpressure', () => {
  const ctx = useFixture();

  test('a full queue makes the worker wait on its client; reading resumes it; all rows arrive in order', async () => {
    const h = await ctx.fx.session.launch("SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 200000) g", { queueSize: 4096 });
    // Bounded: up to 10 s for the worker to fill the queue and block writing to its socket.
    let waitEvent: string | undefined;
    for (let i = 0; i < 100 && waitEvent !== 'Client/ClientWrite'; i++) {
      await sleep(100);
      const r = await withClient(ctx.db.url, (c) =>
        c.query("SELECT wait_event_type || '/' || wait_event AS w FROM pg_stat_activity WHERE pid = $1", [h.pid]),
      );
      waitEvent = r.rows[0]?.w;
    }
    assert.equal(waitEvent, 'Client/ClientWrite');
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
    const handles = [];
    for (let j = 0; j < jobs; j++) {
      handles.push(
        await ctx.fx.session.launch(`SELECT g, md5(g::text || '/${j}') AS h FROM generate_series(1, ${rowsPerJob}) g`, { queueSize: 256 * 1024 }),
      );
    }
    // Bounded: up to 10 s for every job to stall on its full queue or finish.
    for (let i = 0; i < 100; i++) {
      if (handles.every((h) => { const job = ctx.fx.session.trackedJob(h).job; return job.stalled || job.ended; })) break;
      await sleep(100);
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
      if (n % 100_000 === 0) {
        // A slow reader now and then: the worker fills the queue meanwhile, which is when the bound matters.
        await sleep(50);
        maxBuffered = Math.max(maxBuffered, job.bufferedBytes);
        samples++;
      }
    }
    assert.equal(n, 1_000_000);
    assert.equal(sum, (1_000_000 * 1_000_001) / 2);
    console.log(`1M rows: max buffered ${maxBuffered} bytes in ${samples} samples (queue 65536)`);
    assert.ok(maxBuffered >= 65536, 'the queue filled while the reader paused');
    assert.ok(maxBuffered < 65536 + 256 * 1024, `max buffered ${maxBuffered}`);
  });
});

describe('self-deadlock', () => {
  const ctx = useFixture('CREATE TABLE t (id int PRIMARY KEY)');

  test('waiting for a worker blocked by a lock the launcher holds fails with 40P01 naming both pids', async () => {
    await ctx.fx.launcher.query('BEGIN');
    await ctx.fx.launcher.query('LOCK TABLE t IN ACCESS EXCLUSIVE MODE');
    const h = await ctx.fx.session.launch('INSERT INTO t VALUES (1)');
    const launcherPid = (ctx.fx.launcher as unknown as { processID: number }).processID;
    const err = await ctx.fx.session.wait(h).then(() => undefined, (e: unknown) => e as { code: string; detail: string });
    assert.equal(err?.code, '40P01');
    assert.match(err?.detail ?? '', new RegExp(`${launcherPid}.*${h.pid}`));
    await ctx.fx.launcher.query('ROLLBACK');
    await ctx.fx.session.wait(h);
    assert.deepEqual((await ctx.fx.session.result(h)).rows, [{ command: 'INSERT 0 1' }]);
  });
});

describe('control queries outside the pool caps', () => {
  const ctx = useFixture('CREATE TABLE t (id int PRIMARY KEY)', { pool: { maxConnectionsPerLogin: 1, acquireTimeoutMs: 20_000 } });

  test('with a one-connection pool, the self-deadlock check and terminate still run', async () => {
    const { fx } = ctx;
    await fx.launcher.query('BEGIN');
    await fx.launcher.query('LOCK TABLE t IN ACCESS EXCLUSIVE MODE');
    const h = await fx.session.launch('INSERT INTO t VALUES (1)');
    await assert.rejects(fx.session.wait(h), { code: '40P01' });
    await fx.session.cancel(h);
    assert.equal(fx.session.list().find((j) => j.pid === h.pid)?.state, 'canceled');
    await fx.launcher.query('ROLLBACK');
    fx.session.detach(h);
  });
});
