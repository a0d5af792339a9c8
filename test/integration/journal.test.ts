/**
 * The server's journal: every job's start and end is on record; jobs of a run
 * that died are reported lost on the next open, jobs of a live run are not.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pg from 'pg';
import { pino } from 'pino';
import { freePort } from '../../src/embedded/postgres.js';
import { Engine } from '../../src/index.js';
import { Journal } from '../../src/journal/journal.js';
import { startServer } from '../../src/server/server.js';
import { createTestDatabase, withClient } from '../helpers/db.js';
import { sleep, testLogger } from '../helpers/engine.js';

describe('job journal', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  const openJournal = async (schema?: string) => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    c.on('error', () => undefined);
    return { client: c, ...(await Journal.open(c, testLogger(), schema)) };
  };
  const rowsOf = (runId: string) =>
    withClient(db.url, async (c) => (await c.query('SELECT pid, role, state, error_code, sql_preview, started_at IS NOT NULL AS started, ended_at IS NOT NULL AS ended FROM pgbg_server.jobs WHERE run_id = $1 ORDER BY launched_at', [runId])).rows);

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
      await withClient(db.url, (c) => c.query('SELECT pg_terminate_backend($1)', [(dead.client as unknown as { processID: number }).processID]));
      await sleep(100);
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
      await withClient(db.url, (c) => c.query('SELECT pg_terminate_backend($1)', [(dead.client as unknown as { processID: number }).processID]));
      await sleep(100);
      const server = await startServer({
        journalDatabase: db.url, journalSchema: schema, credentials: () => undefined,
        identity: { port: await freePort(), secret: 'a-secret-of-enough-length' },
        logger: pino({ level: 'debug' }, sink), releaseMemoryAfterMs: 0,
      });
      assert.deepEqual(server.lost.map((j) => j.pid), [lostJob.pid]);
      const canceled = await server.engine.session({ launcher }).launch("SELECT pg_sleep(30), 'pw-canceled-s3cret'");
      await sleep(200);
      const report = await server.stop(0);
      assert.deepEqual(report.canceled.map((j) => j.pid), [canceled.pid]);
      await sleep(50);
      const byMsg = (m: string) => lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(m));
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
