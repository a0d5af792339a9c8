/**
 * The server's journal: every job's start and end is on record; jobs of a run
 * that died are reported lost on the next open, jobs of a live run are not.
 * Old jobs are deleted (retention); SQL text can be left out, and never
 * reaches the server's log.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pg from 'pg';
import { pino } from 'pino';
import { freePort } from '../../src/embedded/postgres.js';
import { Engine } from '../../src/index.js';
import { Journal, type JournalOptions } from '../../src/journal/journal.js';
import { startServer } from '../../src/server/server.js';
import { createTestDatabase, withClient } from '../helpers/db.js';
import { sleep, testLogger } from '../helpers/engine.js';
import { until, untilGone, untilSleeping } from '../helpers/activity.js';

describe('job journal', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  const openJournal = async (schema?: string, options?: JournalOptions) => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    c.on('error', () => undefined);
    return { client: c, ...(await Journal.open(c, testLogger(), schema, options)) };
  };
  const rowsOf = (runId: string) =>
    withClient(db.url, async (c) => (await c.query('SELECT pid, role, state, error_code, sql_preview, started_at IS NOT NULL AS started, ended_at IS NOT NULL AS ended FROM pgbg_server.jobs WHERE run_id = $1 ORDER BY launched_at', [runId])).rows);

  /** Ends a journal's connection as a crash would; resolves once its backend (and the run's lock) is gone. */
  const killJournal = async (client: pg.Client) => {
    const pid = (client as unknown as { processID: number }).processID;
    await withClient(db.url, (c) => c.query('SELECT pg_terminate_backend($1)', [pid]));
    await untilGone(db.url, pid);
  };

  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db?.drop();
  });

  test('records each job: state, role, timings, error code', async () => {
    const { journal } = await openJournal();
    const engine = new Engine({ logger: testLogger(), observer: journal });
    const launcher = new pg.Client({ connectionString: db.url });
    await launcher.connect();
    try {
      const session = engine.session({ launcher });
      const ok = await session.launch('SELECT 1');
      await session.result(ok);
      const bad = await session.launch('SELECT 1/0');
      await assert.rejects(session.result(bad), { code: '22012' });
      await engine.close();
      await journal.close();
      const rows = await rowsOf(journal.runId);
      assert.deepEqual(rows.map((r) => [r.pid, r.state, r.error_code, r.sql_preview, r.started, r.ended]), [
        [ok.pid, 'stopped', null, 'SELECT 1', true, true],
        [bad.pid, 'error', '22012', 'SELECT 1/0', true, true],
      ]);
      assert.equal(rows[0]!.role, new URL(db.url).username);
    } finally {
      await launcher.end();
      await engine.close();
    }
  });

  test('a run that died leaves its running jobs for the next open to report as lost; a live run keeps them', async () => {
    const dead = await openJournal();
    const live = await openJournal();
    const engines = [dead, live].map((j) => new Engine({ logger: testLogger(), observer: j.journal }));
    const launcher = new pg.Client({ connectionString: db.url });
    await launcher.connect();
    try {
      const handles = [];
      for (const engine of engines) {
        const session = engine.session({ launcher });
        handles.push({ session, handle: await session.launch('SELECT pg_sleep(30)') });
      }
      await dead.journal.flush();
      await live.journal.flush();
      // The dead run's server vanished: its journal connection is gone, no stop was recorded.
      await killJournal(dead.client);
      const next = await openJournal();
      assert.deepEqual(next.lost.map((j) => [j.runId, j.pid, j.sqlPreview]), [[dead.journal.runId, handles[0]!.handle.pid, 'SELECT pg_sleep(30)']]);
      assert.deepEqual((await rowsOf(dead.journal.runId)).map((r) => r.state), ['lost']);
      assert.deepEqual((await rowsOf(live.journal.runId)).map((r) => r.state), ['running']);
      await next.journal.close();
      for (const h of handles) await h.session.cancel(h.handle);
    } finally {
      await launcher.end();
      for (const engine of engines) await engine.close({ graceMs: 0 });
      await live.journal.close();
      await dead.journal.close();
    }
  });

  /** A job row as an earlier run would have left it, launched `days` ago. */
  const insertJob = (schema: string, runId: string, cookie: number, state: string, days: number) =>
    withClient(db.url, (c) => c.query(
      `INSERT INTO ${schema}.jobs (run_id, cookie, pid, database, role, sql_preview, state, launched_at)
       VALUES ($1, $2, 1, 'db', 'r', 'SELECT 1', $3, now() - $4 * interval '1 day')`, [runId, cookie, state, days]));
  const insertRun = (schema: string, runId: string, days: number, stopped: boolean) =>
    withClient(db.url, (c) => c.query(
      `INSERT INTO ${schema}.runs (run_id, started_at, stopped_at, pid) VALUES ($1, now() - $2 * interval '1 day', CASE WHEN $3 THEN now() - $2 * interval '1 day' END, 1)`,
      [runId, days, stopped]));
  const countIn = async (schema: string, table: 'jobs' | 'runs', where = 'true') =>
    withClient(db.url, async (c) => (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.${table} WHERE ${where}`)).rows[0]!.n);
  const eventually = async (what: string, check: () => Promise<boolean>) => {
    for (let i = 0; i < 100; i++) {
      if (await check()) return;
      await sleep(50);
    }
    assert.fail(`not within 5 s: ${what}`);
  };

  test('retention: at open, jobs launched more than N days ago are deleted (not running ones), newer ones kept; ended runs left without jobs go too', async () => {
    const schema = 'pgbg_retention';
    // Retention 0 deletes nothing, however often it would run.
    const keeper = await openJournal(schema, { retentionDays: 0, pruneEveryMs: 20 });
    const live = await openJournal(schema, { retentionDays: 0 });
    const [oldRun, newRun] = [crypto.randomUUID(), crypto.randomUUID()];
    await insertRun(schema, oldRun, 9, true);
    await insertRun(schema, newRun, 2, true);
    await insertJob(schema, oldRun, 1, 'stopped', 8);
    await insertJob(schema, oldRun, 2, 'error', 30);
    await insertJob(schema, newRun, 3, 'stopped', 6);
    await insertJob(schema, newRun, 4, 'canceled', 0);
    // A job of a live run, running for 8 days: still running, so kept.
    await insertJob(schema, live.journal.runId, 5, 'running', 8);
    // With retention 0 no pass is scheduled, and one asked for deletes nothing.
    assert.equal(await keeper.journal.prune(), 0);
    assert.equal(await countIn(schema, 'jobs'), 5, 'retention 0 keeps everything');
    await keeper.journal.close();

    const next = await openJournal(schema, { retentionDays: 7 });
    try {
      await eventually('the old jobs are deleted at open', async () => (await countIn(schema, 'jobs')) === 3);
      await eventually('the old run is deleted', async () => (await countIn(schema, 'runs', `run_id = '${oldRun}'`)) === 0);
      const left = await withClient(db.url, async (c) => (await c.query(`SELECT cookie::int AS cookie FROM ${schema}.jobs ORDER BY cookie`)).rows);
      assert.deepEqual(left.map((r) => r.cookie), [3, 4, 5]);
      assert.equal(await countIn(schema, 'runs', `run_id IN ('${newRun}', '${live.journal.runId}', '${next.journal.runId}')`), 3);
      // Once the live run has ended, its job is no longer running: the next pass deletes it.
      await withClient(db.url, (c) => c.query(`UPDATE ${schema}.jobs SET state = 'stopped' WHERE cookie = 5`));
      assert.equal(await next.journal.prune(), 1);
      assert.equal(await countIn(schema, 'jobs'), 2);
    } finally {
      await next.journal.close();
      await live.journal.close();
    }
  });

  test('retention runs again periodically, also over more than one batch', async () => {
    const schema = 'pgbg_retention_timer';
    const { journal } = await openJournal(schema, { retentionDays: 7, pruneEveryMs: 200 });
    try {
      await insertJob(schema, crypto.randomUUID(), 1, 'stopped', 1);
      // Twice: the second time, only a later pass than the open's can have deleted them.
      for (const round of [1, 2]) {
        // More than one batch's worth (5000), all launched 8 days ago.
        await withClient(db.url, (c) => c.query(
          `INSERT INTO ${schema}.jobs (run_id, cookie, pid, database, role, sql_preview, state, launched_at)
           SELECT $1, g, 1, 'db', 'r', '', 'stopped', now() - interval '8 days' FROM generate_series(1, 12000) g`, [crypto.randomUUID()]));
        await eventually(`round ${round}: a pass deleted the old jobs`, async () => (await countIn(schema, 'jobs')) === 1);
      }
    } finally {
      await journal.close();
    }
  });

  test("with sql 'none' no SQL text is stored, not even for a lost job", async () => {
    const schema = 'pgbg_nosql';
    const dead = await openJournal(schema, { sql: 'none' });
    const engine = new Engine({ logger: testLogger(), observer: dead.journal });
    const launcher = new pg.Client({ connectionString: db.url });
    await launcher.connect();
    try {
      const session = engine.session({ launcher });
      await session.result(await session.launch("SELECT 'pw-s3cret-1' AS x"));
      const slow = await session.launch("SELECT pg_sleep(30), 'pw-s3cret-2'");
      await dead.journal.flush();
      const rows = await withClient(db.url, async (c) => (await c.query(`SELECT state, sql_preview FROM ${schema}.jobs ORDER BY launched_at`)).rows);
      assert.deepEqual(rows, [{ state: 'stopped', sql_preview: '' }, { state: 'running', sql_preview: '' }]);
      await killJournal(dead.client);
      const next = await openJournal(schema);
      assert.deepEqual(next.lost.map((j) => [j.pid, j.sqlPreview]), [[slow.pid, '']]);
      await next.journal.close();
      await session.cancel(slow);
    } finally {
      await launcher.end();
      await engine.close({ graceMs: 0 });
      await dead.journal.close();
    }
  });

  test('the server never logs SQL text: not for a job an earlier run lost, nor for one canceled at shutdown', async () => {
    const schema = 'pgbg_logs';
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    // An earlier run dies with a job running.
    const dead = await openJournal(schema);
    const deadEngine = new Engine({ logger: testLogger(), observer: dead.journal });
    const launcher = new pg.Client({ connectionString: db.url });
    await launcher.connect();
    try {
      const lostJob = await deadEngine.session({ launcher }).launch("SELECT pg_sleep(30), 'pw-lost-s3cret'");
      await dead.journal.flush();
      await killJournal(dead.client);
      const server = await startServer({
        journalDatabase: db.url, journalSchema: schema, credentials: () => undefined,
        identity: { port: await freePort() },
        logger: pino({ level: 'debug' }, sink), releaseMemoryAfterMs: 0,
      });
      assert.deepEqual(server.lost.map((j) => j.pid), [lostJob.pid]);
      const canceled = await server.engine.session({ launcher }).launch("SELECT pg_sleep(30), 'pw-canceled-s3cret'");
      await untilSleeping(db.url, canceled.pid);
      const report = await server.stop(0);
      assert.deepEqual(report.canceled.map((j) => j.pid), [canceled.pid]);
      const byMsg = (m: string) => lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(m));
      await until(() => byMsg('job canceled at shutdown').length > 0, 'the shutdown is logged');
      const lost = byMsg('job lost');
      assert.equal(lost.length, 1, 'the lost job is logged');
      assert.deepEqual([lost[0]!.pid, lost[0]!.role, lost[0]!.database, lost[0]!.run], [lostJob.pid, new URL(db.url).username, db.name, dead.journal.runId]);
      const atShutdown = byMsg('job canceled at shutdown');
      assert.equal(atShutdown.length, 1, 'the canceled job is logged');
      assert.deepEqual([atShutdown[0]!.pid, atShutdown[0]!.role, atShutdown[0]!.database], [canceled.pid, new URL(db.url).username, db.name]);
      const text = lines.map((l) => JSON.stringify(l)).join('\n');
      for (const secret of ['pw-lost-s3cret', 'pw-canceled-s3cret', 'pg_sleep']) {
        assert.ok(!text.includes(secret), `"${secret}" is in the log:\n${text}`);
      }
    } finally {
      await launcher.end();
      await deadEngine.close({ graceMs: 0 });
      await dead.journal.close();
    }
  });
});
