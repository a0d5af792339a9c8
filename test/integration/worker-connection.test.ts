/**
 * A worker connection on its own, against the real server: node-postgres logs
 * it in, then the worker's state machine runs jobs and engine SQL, resets
 * between them, and gives the connection up when its state is unknown (a
 * backend terminated mid-job, a COPY).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { pino } from 'pino';
import { createTestDatabase, withClient } from '../helpers/db.js';
import { untilSleeping } from '../helpers/activity.js';
import { decodeDataRow, splitRowRun } from '../../src/protocol/data-row.js';
import type { Notice } from '../../src/protocol/messages.js';
import { WorkerConnection, type ResultSink, type WorkerJob } from '../../src/workers/worker.js';

type TestDb = Awaited<ReturnType<typeof createTestDatabase>>;

function jobStub(): WorkerJob & { notices: Notice[] } {
  const notices: Notice[] = [];
  return { notices, onFull: () => undefined, onDrain: () => undefined, setProgress: () => undefined, addNotice: (n) => void notices.push(n) };
}

function rowsSink(): ResultSink & { rows: (string | null)[][]; tags: string[] } {
  const rows: (string | null)[][] = [];
  const tags: string[] = [];
  return {
    rows,
    tags,
    rowDescription: () => undefined,
    dataRow: (run) => void rows.push(...splitRowRun(run).map(decodeDataRow)),
    commandComplete: (tag) => void tags.push(tag),
    emptyQuery: () => undefined,
  };
}

describe('worker connection', () => {
  let db: TestDb;
  const open = () => WorkerConnection.open({ config: { connectionString: db.url }, logger: pino({ level: 'silent' }) });

  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  test('the pid is the backend\'s; engine SQL returns rows by column name', async () => {
    const w = await open();
    try {
      const r = await w.query('SELECT pg_backend_pid() AS pid, NULL::text AS nothing');
      assert.deepEqual(r.rows, [{ pid: String(w.pid), nothing: null }]);
      await assert.rejects(w.query('SELECT nope'), (err: unknown) => err instanceof pg.DatabaseError && err.code === '42703');
      assert.equal(w.alive, true);
    } finally {
      await w.close();
    }
    assert.equal(w.alive, false);
  });

  test('jobs and the resets that went out with them, after success and after an error; the next job sees a clean session', async () => {
    const w = await open();
    try {
      const initial = (await w.query('SHOW work_mem')).rows[0]!.work_mem;
      assert.notEqual(initial, '7MB');
      assert.deepEqual(await w.run(jobStub(), "SET work_mem = '7MB'", rowsSink()), { lost: false, txStatus: 'I' });
      assert.equal(await w.reset(), true);
      const failed = await w.run(jobStub(), 'SELECT 1/0', rowsSink());
      assert.ok(failed.error instanceof pg.DatabaseError, 'the server\'s error, as node-postgres would give it');
      assert.equal(failed.error.code, '22012');
      assert.equal(failed.error.message, 'division by zero');
      assert.deepEqual([failed.lost, failed.txStatus], [false, 'I']);
      assert.equal(await w.reset(), true);

      const sink = rowsSink();
      const job = jobStub();
      const ok = await w.run(job, "DO $$ BEGIN RAISE NOTICE 'hi' USING HINT = 'h'; END $$; SHOW work_mem", sink);
      assert.deepEqual(ok, { lost: false, txStatus: 'I' });
      assert.equal(await w.reset(), true);
      assert.deepEqual(sink.rows, [[initial]], 'the reset undid the first job\'s SET');
      assert.deepEqual(sink.tags, ['DO', 'SHOW']);
      assert.equal(job.notices.length, 1);
      assert.equal(job.notices[0]!.message, 'hi');
      assert.equal(job.notices[0]!.hint, 'h');
      assert.equal(w.jobsRun, 3);
    } finally {
      await w.close();
    }
  });

  test('a backend terminated mid-job: lost, with its FATAL error; the connection is broken', async () => {
    const w = await open();
    const running = w.run(jobStub(), 'SELECT pg_sleep(30)', rowsSink());
    // Until the sleep is on, pg_terminate_backend could hit the backend between statements.
    await untilSleeping(db.url, w.pid);
    await withClient(db.url, (c) => c.query('SELECT pg_terminate_backend($1)', [w.pid]));
    const outcome = await running;
    assert.equal(outcome.lost, true);
    assert.equal((outcome.error as pg.DatabaseError).code, '57P01');
    assert.equal(w.alive, false);
    assert.equal(await w.reset(), false);
    await w.close();
  });

  test('a cancel request stops the job; the connection stays usable', async () => {
    const w = await open();
    try {
      const running = w.run(jobStub(), 'SELECT pg_sleep(30)', rowsSink());
      // A cancel request that arrives before the statement runs cancels nothing.
      await untilSleeping(db.url, w.pid);
      await w.cancel();
      const outcome = await running;
      assert.equal((outcome.error as pg.DatabaseError).code, '57014');
      assert.equal(outcome.lost, false);
      assert.equal(w.cancelSent, true);
      assert.equal(w.alive, true);
    } finally {
      await w.close();
    }
  });

  test('COPY that reaches the wire (TO STDOUT, FROM STDIN): 0A000, and the connection is never reused', async () => {
    for (const sql of ['COPY (SELECT g FROM generate_series(1, 100000) g) TO STDOUT', 'CREATE TEMP TABLE t (x int); COPY t FROM STDIN']) {
      const w = await open();
      const sink = rowsSink();
      const outcome = await w.run(jobStub(), sql, sink);
      assert.equal((outcome.error as { code?: string }).code, '0A000', sql);
      assert.equal(outcome.error?.message, 'COPY protocol not allowed in pg_background');
      assert.equal(outcome.lost, true);
      assert.equal(w.alive, false);
      assert.equal(await w.reset(), false);
      assert.deepEqual(sink.rows, []);
      await w.close();
    }
  });

  test('COPY inside a function is refused by the server itself: an ordinary error, the connection stays', async () => {
    const w = await open();
    try {
      const outcome = await w.run(jobStub(), "DO $$ BEGIN EXECUTE 'COPY (SELECT 1) TO STDOUT'; END $$", rowsSink());
      assert.equal((outcome.error as pg.DatabaseError).code, '0A000');
      assert.equal(outcome.lost, false);
      assert.equal(await w.reset(), true);
      assert.equal(w.alive, true);
    } finally {
      await w.close();
    }
  });
});
