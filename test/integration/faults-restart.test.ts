/**
 * Faults: PostgreSQL restarted (fast and immediate shutdown) under a running
 * `pgbg serve`, with jobs in flight. The server must come back by itself: the
 * jobs that were running end with a clear error (none stays `running` in the
 * journal, none commits), and new calls work once PostgreSQL is back.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort, startEmbeddedPostgres, type EmbeddedServer } from '../../src/embedded/postgres.js';
import { pgbg, startServeProcess, type ServeProcess } from '../helpers/serve-process.js';
import { untilRecovered } from '../helpers/activity.js';

async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end().catch(() => undefined);
  }
}

describe('PostgreSQL restarted under a running pgbg serve', () => {
  let dir: string;
  let port: number;
  let postgres: EmbeddedServer;
  let serve: ServeProcess;
  let url: string;

  const startPostgres = async () => {
    postgres = await startEmbeddedPostgres({ dataDir: path.join(dir, 'pg'), port });
    url = postgres.url('postgres');
  };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'pgbg-restart-'));
    await chmod(dir, 0o755); // PostgreSQL may run as another OS user (when we are root)
    port = await freePort();
    await startPostgres();
    await query(url, 'CREATE EXTENSION dblink; CREATE TABLE t (id int)');
    const pgpass = path.join(dir, 'pgpass');
    await writeFile(pgpass, `127.0.0.1:${port}:*:${postgres.user}:${postgres.password}\n`, { mode: 0o600 });
    pgbg('install', '--database', url, '--data', path.join(dir, 'pgbg'));
    serve = await startServeProcess(['--database', url, '--pgpass', pgpass, '--data', path.join(dir, 'pgbg'), '--log-level', 'info']);
  });
  after(async () => {
    await serve?.stop();
    await postgres?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const mode of ['fast', 'immediate'] as const) {
    test(`${mode} shutdown with a job in flight: the job ends with an error, nothing commits, new calls work`, async () => {
      const caller = new pg.Client({ connectionString: url });
      await caller.connect();
      caller.on('error', () => undefined); // its backend dies with the restart
      const marker = `restart-${mode}`;
      const h = (await caller.query<{ pid: number; cookie: string }>(
        `SELECT (h).pid, (h).cookie FROM (SELECT pg_background_launch($1) AS h) s`,
        [`INSERT INTO t VALUES (1); SELECT pg_sleep(60); SELECT '${marker}'`],
      )).rows[0]!;
      await untilRecovered(async () => (await query(url, "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [h.pid])).length === 1, 'the job reaching its sleep',
        30_000);

      if (mode === 'fast') {
        await postgres.stop();
      } else {
        const pid = Number((await readFile(path.join(dir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
        process.kill(pid, 'SIGQUIT');
        await postgres.stop(); // waits for the exit
      }
      await caller.end().catch(() => undefined);
      assert.equal(serve.child.exitCode, null, 'pgbg serve survived the restart');
      await startPostgres();

      // New calls work once PostgreSQL is back (the server reconnects by itself).
      await untilRecovered(async () => (await query<{ x: number }>(url, "SELECT * FROM pg_background_run_query('SELECT 42', col_def => 'x int') AS r(x int)"))[0]?.x === 42, 'a new call answering after the restart',
        60_000);
      // The job in flight did not commit, and the journal does not leave it running.
      assert.deepEqual(await query(url, 'SELECT count(*)::int AS n FROM t'), [{ n: 0 }]);
      await untilRecovered(async () => {
        const rows = await query<{ state: string; error_code: string | null }>(url, 'SELECT state, error_code FROM pgbg_server.jobs WHERE cookie = $1', [h.cookie]);
        return rows.length === 1 && rows[0]!.state !== 'running';
      }, 'the journal recording the job\'s end', 30_000);
      const [job] = await query<{ state: string; error_code: string | null; error_message: string | null }>(url,
        'SELECT state, error_code, error_message FROM pgbg_server.jobs WHERE cookie = $1', [h.cookie]);
      assert.equal(job!.state, 'error', JSON.stringify(job));
      assert.match(job!.error_code ?? '', /^(08006|57P01|57P02|57P03)$/, JSON.stringify(job));
      // The server is not stuck: several launches in a row, attached and detached.
      const rows = await query<{ n: number }>(url,
        "SELECT count(*)::int AS n FROM pg_background_run('INSERT INTO t VALUES (2)') r WHERE r.completed AND NOT r.has_error");
      assert.deepEqual(rows, [{ n: 1 }]);
      assert.deepEqual(await query(url, 'SELECT count(*)::int AS n FROM t WHERE id = 2'), [{ n: 1 }]);
      await query(url, 'DELETE FROM t');
    });
  }
});
