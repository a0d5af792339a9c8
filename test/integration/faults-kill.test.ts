/**
 * Faults: the pgbg server killed outright (SIGKILL, as the OOM killer does) or
 * frozen (SIGSTOP), as a user runs it.
 *  - Embedded: its PostgreSQL must not outlive it, and the next start must work
 *    with no manual step, even when an orphan is left running.
 *  - Against an existing PostgreSQL: committed work stays, the job in flight is
 *    stopped (it does not commit later with nobody to hear of it), the next run
 *    reports it lost, and the callers' next calls reach the new run.
 *  - Frozen: callers give up by their statement_timeout; all resumes after.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../../src/embedded/postgres.js';
import { createTestDatabase, serverUrl } from '../helpers/db.js';
import { pgbg, startServeProcess, type ServeProcess } from '../helpers/serve-process.js';
import { untilRecovered } from '../helpers/activity.js';


/** Alive and not a zombie (an orphan's new parent may never reap it). */
async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

async function postmasterPid(dataDir: string): Promise<number> {
  return Number((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
}

/** The shell that stops PostgreSQL when pgbg dies (see watchOver in src/embedded/postgres.ts). */
async function watchdogOf(postmaster: number): Promise<number | undefined> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmd = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(`kill -INT ${postmaster}`)) return Number(entry);
  }
  return undefined;
}

describe('pgbg serve --embedded killed outright', () => {
  let dir: string;
  let serve: ServeProcess | undefined;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'pgbg-kill-'));
    await chmod(dir, 0o755);
  });
  after(async () => {
    await serve?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  const start = async () => {
    serve = await startServeProcess(['--embedded', '--data', path.join(dir, 'data'), '--port', String(await freePort()), '--log-level', 'warn']);
  };

  test('its PostgreSQL stops by itself, and the next start works', async () => {
    await start();
    const postmaster = await postmasterPid(path.join(dir, 'data', 'pg'));
    serve!.child.kill('SIGKILL');
    await serve!.exited;
    await untilRecovered(async () => !(await alive(postmaster)), `the embedded PostgreSQL (pid ${postmaster}) stopping after pgbg was killed`, 30_000);
    await start();
    assert.match(serve!.output(), /^ready: /m);
  });

  test('an orphan left running on the data folder is stopped by the next start', async () => {
    if (!serve || serve.child.exitCode !== null) await start();
    const postmaster = await postmasterPid(path.join(dir, 'data', 'pg'));
    // As if the watchdog had died too (killed with the whole process tree by hand).
    const watchdog = await watchdogOf(postmaster);
    assert.ok(watchdog, 'a watchdog process guards the embedded PostgreSQL');
    process.kill(watchdog, 'SIGKILL');
    serve!.child.kill('SIGKILL');
    await serve!.exited;
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(await alive(postmaster), 'the orphan is still running');
    await start();
    assert.equal(await alive(postmaster), false, 'the orphan was stopped');
    assert.notEqual(await postmasterPid(path.join(dir, 'data', 'pg')), postmaster);
  });
});

describe('pgbg serve --database killed outright, or frozen', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let dir: string;
  let args: string[];
  let serve: ServeProcess;
  let caller: pg.Client;

  before(async () => {
    db = await createTestDatabase();
    dir = await mkdtemp(path.join(os.tmpdir(), 'pgbg-kill-db-'));
    const login = new URL(serverUrl());
    const pgpass = path.join(dir, 'pgpass');
    await writeFile(pgpass, `${login.hostname}:${login.port}:*:${decodeURIComponent(login.username)}:${decodeURIComponent(login.password)}\n`, { mode: 0o600 });
    pgbg('install', '--database', db.url, '--data', dir);
    args = ['--database', db.url, '--pgpass', pgpass, '--data', dir, '--log-level', 'info'];
    serve = await startServeProcess(args);
    caller = new pg.Client({ connectionString: db.url });
    await caller.connect();
    await caller.query('CREATE TABLE t (id int)');
  });
  after(async () => {
    await caller?.end().catch(() => undefined);
    await serve?.stop();
    await db?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const count = async (id: number) => (await caller.query<{ n: number }>('SELECT count(*)::int AS n FROM t WHERE id = $1', [id])).rows[0]!.n;

  test('SIGKILL mid-job: committed work stays, the job in flight stops and is reported lost, callers reach the next run', async () => {
    await caller.query("SELECT pg_background_detach((h).pid, (h).cookie) FROM (SELECT pg_background_launch('INSERT INTO t VALUES (1)') AS h) s");
    await untilRecovered(async () => (await count(1)) === 1, 'the detached job committing', 30_000);
    // One info line per job end: state and timing, never the SQL text.
    const ended = await serve.waitFor(/^.*"msg":"job end".*$/m, 10_000, 'log');
    assert.match(ended, /"state":"stopped"/);
    assert.doesNotMatch(ended, /INSERT/);
    const h = (await caller.query<{ pid: number; cookie: string }>(
      "SELECT (h).pid, (h).cookie FROM (SELECT pg_background_launch('INSERT INTO t VALUES (2); SELECT pg_sleep(60)') AS h) s")).rows[0]!;
    await untilRecovered(async () => (await caller.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [h.pid])).rowCount === 1, 'the job reaching its sleep',
      30_000);
    // (The journal writes behind the launches, within 50 ms: a crash before that forgets the job.)
    await untilRecovered(async () => (await caller.query("SELECT 1 FROM pgbg_server.jobs WHERE cookie = $1 AND state = 'running'", [h.cookie])).rowCount === 1, 'the journal recording the job',
      10_000);

    serve.child.kill('SIGKILL');
    await serve.exited;
    // The worker notices its server is gone (client_connection_check_interval) and stops: nothing of it commits.
    await untilRecovered(async () => (await caller.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [h.pid])).rowCount === 0, `the orphaned worker backend (pid ${h.pid}) ending`,
      30_000);
    assert.equal(await count(1), 1, 'the committed job is there once');
    assert.equal(await count(2), 0, 'the job in flight did not commit');
    // While no server runs, a call says so clearly.
    await assert.rejects(caller.query("SELECT pg_background_launch('SELECT 1')"), { code: '08001' });

    serve = await startServeProcess(args);
    await serve.waitFor(/1 job\(s\) of an earlier run were lost/, 10_000);
    await serve.waitFor(new RegExp(`"pid":${h.pid}.*job lost`), 10_000, 'log');
    const journal = await caller.query('SELECT state FROM pgbg_server.jobs WHERE cookie = $1', [h.cookie]);
    assert.deepEqual(journal.rows, [{ state: 'lost' }]);
    // The caller's backend, still connected to the dead run, reaches the new one on its next call.
    const r = await caller.query("SELECT * FROM pg_background_run_query('SELECT 7', col_def => 'x int') AS r(x int)");
    assert.deepEqual(r.rows, [{ x: 7 }]);
  });

  test('SIGSTOP: a caller gives up by its statement_timeout; after SIGCONT everything works', async () => {
    await caller.query("SET statement_timeout = '1s'");
    process.kill(serve.pid, 'SIGSTOP');
    // Resumed after 3 s whatever the caller does: before PostgreSQL 17, dblink waits for an
    // answer without seeing statement_timeout, so there the call fails (57014) only once the server answers.
    const resume = setTimeout(() => process.kill(serve.pid, 'SIGCONT'), 3000);
    try {
      await assert.rejects(caller.query("SELECT * FROM pg_background_run_query('SELECT 1', col_def => 'x int') AS r(x int)"), { code: '57014' });
    } finally {
      clearTimeout(resume);
      process.kill(serve.pid, 'SIGCONT');
      await caller.query('RESET statement_timeout');
    }
    const r = await caller.query("SELECT * FROM pg_background_run_query('SELECT 8', col_def => 'x int') AS r(x int)");
    assert.deepEqual(r.rows, [{ x: 8 }]);
    const j = await caller.query("SELECT has_error FROM pg_background_run('INSERT INTO t VALUES (3)')");
    assert.deepEqual(j.rows, [{ has_error: false }]);
    assert.equal(await count(3), 1);
  });
});
