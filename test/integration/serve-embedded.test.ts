/**
 * `npm start` (= pgbg serve --embedded) as a user runs it: a subprocess that
 * prints the ready line, serves the SQL API (also as CREATE EXTENSION in a new
 * database), keeps a journal, and on Ctrl-C lets running jobs finish up to the
 * deadline and reports the rest. Restarted on the same data folder, it keeps
 * working. Each test has data folders of its own; whatever a test leaves
 * running (a server, its embedded PostgreSQL) is killed after it.
 */
import { after, afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { access, chmod, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { constants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import pg from 'pg';
import { freePort } from '../../src/embedded/postgres.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * Stops a PostgreSQL left running in `dataDir` (read from its postmaster.pid), as a test that
 * failed or killed the server may leave it: SIGQUIT (immediate shutdown, its backends with it),
 * then SIGKILL if it is still there after 10 s. Resolves once it is gone.
 */
async function stopLeftPostgres(dataDir: string): Promise<void> {
  let pid: number;
  try {
    pid = Number((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  } catch {
    return; // never started, or stopped cleanly
  }
  if (!(pid > 0) || !alive(pid)) return;
  // Only the postmaster of this folder (the pid may have been reused since).
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.includes(dataDir)) return;
  process.stderr.write(`stopping the PostgreSQL a test left running in ${dataDir} (pid ${pid})\n`);
  process.kill(pid, 'SIGQUIT');
  for (let i = 0; i < 200 && alive(pid); i++) {
    if (i === 100) process.kill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Serving {
  child: ChildProcessByStdio<null, Readable, Readable>;
  url: string;
  output: () => string;
  /** What the server logged (pino JSON lines). */
  log: () => string;
}

/** How the server is started: from the sources (`npm start`), or by an installed `pgbg` command (a link to bin/pgbg). */
type Launch = { command?: undefined } | { command: string; env: NodeJS.ProcessEnv };

/** The jemalloc bin/pgbg would preload on this machine: the first readable one of the paths it tries. */
async function systemJemalloc(): Promise<string | undefined> {
  const launcher = await readFile(path.join(ROOT, 'bin/pgbg'), 'utf8');
  const list = /for lib in ([^;]+);/.exec(launcher)?.[1]?.replaceAll('\\\n', ' ').split(/\s+/).filter(Boolean) ?? [];
  assert.ok(list.length > 0, 'bin/pgbg lists where jemalloc may be');
  for (const lib of list) {
    try {
      await access(lib, constants.R_OK);
      return lib;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Servers started and not yet exited: each is killed (its process group) after the test that started it. */
const started = new Set<ChildProcessByStdio<null, Readable, Readable>>();
/** Data folders the tests made: a PostgreSQL left in one is stopped after each test; all are removed at the end. */
const folders = new Set<string>();

async function newFolder(prefix = 'pgbg-serve-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  await chmod(dir, 0o755); // the PostgreSQL OS user must reach pg/ inside it
  folders.add(dir);
  return dir;
}

afterEach(async () => {
  for (const child of started) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  started.clear();
  for (const dir of folders) await stopLeftPostgres(path.join(dir, 'pg'));
});

after(async () => {
  for (const dir of folders) await rm(dir, { recursive: true, force: true });
});

async function startServe(data: string, port: number, extra: string[] = [], launch: Launch = {}): Promise<Serving> {
  const args = ['serve', '--embedded', '--port', String(port), '--data', data, '--log-level', 'warn', ...extra];
  // Its own process group, so stopServe can signal the group as a terminal's Ctrl-C does.
  const options = { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'], detached: true };
  const child = launch.command === undefined
    ? spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], options)
    : spawn(launch.command, args, { ...options, env: launch.env });
  started.add(child);
  child.once('exit', () => started.delete(child));
  let out = '';
  let log = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    log += d.toString();
    // Shown as before (warnings and errors); debug lines are only kept for the assertions.
    for (const line of d.toString().split('\n')) if (/"level":[4-6]0/.test(line)) process.stderr.write(line + '\n');
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line in 90 s; got: ${out}`)), 90_000);
    const check = () => {
      const m = /^ready: (postgresql:\/\/\S+)$/m.exec(out);
      if (!m) return;
      clearTimeout(timer);
      child.stdout.off('data', check);
      resolve(m[1]!);
    };
    child.stdout.on('data', check);
    child.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)));
  });
  return { child, url, output: () => out, log: () => log };
}

async function stopServe(s: Serving): Promise<{ code: number | null; output: string }> {
  const exit = new Promise<number | null>((resolve) => s.child.once('exit', (code) => resolve(code)));
  process.kill(-s.child.pid!, 'SIGINT'); // the whole group, like Ctrl-C in a terminal
  const timer = setTimeout(() => s.child.kill('SIGKILL'), 60_000);
  const code = await exit;
  clearTimeout(timer);
  return { code, output: s.output() };
}

/**
 * The first query the server prints is the README's (up to the data folder and
 * port), and pasted into a shell it answers 42 — when psql is on the PATH (true
 * then: its job is in the journal).
 */
async function pastedQueryAnswers(serving: Serving, data: string, port: number): Promise<boolean> {
  let line: string | undefined;
  for (let i = 0; i < 100 && !(line = /^ {2}(PGPASSWORD=.*)$/m.exec(serving.output())?.[1]); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(line, `the server printed a query to paste; got: ${serving.output()}`);
  const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
  const block = /```sh\n(PGPASSWORD=[^`]*?)\n```/.exec(readme)?.[1]?.replace(/ \\\n\s*/g, ' ');
  assert.equal(block?.replace('.pgbg/pg.password', path.join(data, 'pg.password')).replaceAll('54329', String(port)), line);
  if (spawnSync('sh', ['-c', 'command -v psql']).status !== 0) return false;
  const r = spawnSync('sh', ['-c', line], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\s*42$/m);
  return true;
}

describe('pgbg serve --embedded', () => {
  /** A client of the embedded PostgreSQL a server printed the URL of (its password is in the data folder). */
  const client = async (serving: Serving, data: string, database: string, fn: (c: pg.Client) => Promise<void>) => {
    const u = new URL(serving.url);
    const password = (await readFile(path.join(data, 'pg.password'), 'utf8')).trim();
    const c = new pg.Client({ host: u.hostname, port: Number(u.port), user: u.username, database, password });
    await c.connect();
    try {
      await fn(c);
    } finally {
      await c.end();
    }
  };
  const detached = (sql: string) => `SELECT pg_background_detach((h).pid, (h).cookie) FROM (SELECT pg_background_launch('${sql.replaceAll("'", "''")}') AS h OFFSET 0) s`;
  /** A folder whose journal holds a job canceled at the deadline, in a database `app` made with CREATE EXTENSION. */
  const withCanceledJob = async (): Promise<{ data: string; port: number }> => {
    const data = await newFolder();
    const port = await freePort();
    const serving = await startServe(data, port, ['--grace-ms', '300']);
    await client(serving, data, 'postgres', (c) => c.query('CREATE DATABASE app').then(() => undefined));
    await client(serving, data, 'app', async (c) => {
      await c.query('CREATE EXTENSION pg_background');
      await c.query(detached('SELECT pg_sleep(30)'));
    });
    const stopped = await stopServe(serving);
    assert.equal(stopped.code, 0);
    assert.match(stopped.output, /^stopped: 0 running job\(s\) finished, 1 canceled at the deadline$/m);
    return { data, port };
  };

  test('ready line; the SQL API answers 42; a running job finishes within the grace period on Ctrl-C', async () => {
    const data = await newFolder();
    const port = await freePort();
    const serving = await startServe(data, port);
    assert.equal(serving.url, `postgresql://postgres@127.0.0.1:${port}/postgres`);
    await pastedQueryAnswers(serving, data, port);
    await client(serving, data, 'postgres', async (c) => {
      const r = await c.query("SELECT * FROM pg_background_run_query('SELECT 42', col_def => 'x int') AS r(x int)");
      assert.deepEqual(r.rows, [{ x: 42 }]);
      await c.query('CREATE TABLE done (at timestamptz)');
      await c.query(detached('SELECT pg_sleep(1.5); INSERT INTO done VALUES (now())'));
    });
    const stopped = await stopServe(serving);
    assert.equal(stopped.code, 0);
    assert.match(stopped.output, /^stopped: 1 running job\(s\) finished, 0 canceled at the deadline$/m);
  });

  test('restarted on the same folder: the journal kept every job (one finished during the shutdown committed); CREATE EXTENSION pg_background works in a new database; a job over the grace period is canceled', async () => {
    const data = await newFolder();
    const port = await freePort();
    const first = await startServe(data, port);
    await client(first, data, 'postgres', async (c) => {
      assert.deepEqual((await c.query("SELECT * FROM pg_background_run_query('SELECT 42', col_def => 'x int') AS r(x int)")).rows, [{ x: 42 }]);
      await c.query('CREATE TABLE done (at timestamptz)');
      await c.query(detached('SELECT pg_sleep(0.5); INSERT INTO done VALUES (now())'));
    });
    assert.match((await stopServe(first)).output, /^stopped: 1 running job\(s\) finished, 0 canceled at the deadline$/m);
    const serving = await startServe(data, port, ['--grace-ms', '300']);
    await client(serving, data, 'postgres', async (c) => {
      assert.equal((await c.query('SELECT count(*)::int AS n FROM done')).rows[0].n, 1, 'the job that ran during shutdown committed');
      const j = await c.query('SELECT state, role, sql_preview FROM pgbg_server.jobs ORDER BY launched_at');
      assert.deepEqual(j.rows, [
        { state: 'stopped', role: 'postgres', sql_preview: 'SELECT 42' },
        { state: 'stopped', role: 'postgres', sql_preview: 'SELECT pg_sleep(0.5); INSERT INTO done VALUES (now())' },
      ]);
      await c.query('CREATE DATABASE app');
    });
    await client(serving, data, 'app', async (c) => {
      await c.query('CREATE EXTENSION pg_background');
      const r = await c.query("SELECT * FROM pg_background_run_query('SELECT current_database()::text', col_def => 'd text') AS r(d text)");
      assert.deepEqual(r.rows, [{ d: 'app' }]);
      assert.equal((await c.query('SHOW pg_background.max_workers')).rows.length, 1);
      await c.query(detached('SELECT pg_sleep(30)'));
    });
    const stopped = await stopServe(serving);
    assert.equal(stopped.code, 0);
    assert.match(stopped.output, /^stopped: 0 running job\(s\) finished, 1 canceled at the deadline$/m);
  });

  test('a start by the installed pgbg command: the canceled job of the run before is on record, the extension still answers; memory is released once quiet', async () => {
    const { data, port } = await withCanceledJob();
    // As npm installs it: a link to bin/pgbg (which runs the build: `npm test` builds first).
    const bin = await newFolder('pgbg-bin-');
    const command = path.join(bin, 'pgbg');
    await symlink(path.join(ROOT, 'bin/pgbg'), command);
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`, MALLOC_ARENA_MAX: '4' };
    delete env.MALLOC_MMAP_THRESHOLD_;
    delete env.MALLOC_TRIM_THRESHOLD_;
    const serving = await startServe(data, port, ['--release-memory-ms', '300', '--log-level', 'debug'], { command, env });
    // The command execs Node (the server keeps its pid) with the allocator settings it sets
    // unless given. (Whether the embedded PostgreSQL got them cannot be read here: a backend
    // reuses its environment's memory for its process title.)
    const environ = async (pid: number) => (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
    const own = await environ(serving.child.pid!);
    assert.ok((await readFile(`/proc/${serving.child.pid!}/cmdline`, 'utf8')).includes('dist/cli/main.js'), 'the server runs the build');
    assert.ok(own.includes('MALLOC_ARENA_MAX=4'), 'a setting given is kept');
    assert.ok(own.includes('MALLOC_MMAP_THRESHOLD_=65536') && own.includes('MALLOC_TRIM_THRESHOLD_=131072'), own.filter((e) => e.startsWith('MALLOC')).join(' '));
    // jemalloc runs in the server when the system has it, and never in the embedded PostgreSQL
    // (whose loaded libraries /proc shows, though not its environment).
    const jemalloc = await systemJemalloc();
    const loaded = async (pid: number) => (await readFile(`/proc/${pid}/maps`, 'utf8')).includes('libjemalloc');
    assert.equal(await loaded(serving.child.pid!), jemalloc !== undefined, `the server runs on ${jemalloc ?? 'glibc malloc'}`);
    assert.equal(own.includes(`PGBG_PRELOADED=${jemalloc}`), jemalloc !== undefined);
    const postmaster = Number((await readFile(path.join(data, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
    assert.equal(await loaded(postmaster), false, 'the embedded PostgreSQL runs on its own allocator');
    await client(serving, data, 'postgres', async (c) => {
      const j = await c.query("SELECT state, database FROM pgbg_server.jobs WHERE sql_preview = 'SELECT pg_sleep(30)'");
      assert.deepEqual(j.rows, [{ state: 'canceled', database: 'app' }]);
    });
    await client(serving, data, 'app', async (c) => {
      const r = await c.query("SELECT * FROM pg_background_run_query('SELECT 7', col_def => 'x int') AS r(x int)");
      assert.deepEqual(r.rows, [{ x: 7 }]);
    });
    // The job above is activity; 300 ms of quiet later the server collects garbage (bounded wait).
    const released = () => serving.log().split('\n').filter((l) => l.includes('"msg":"quiet: garbage collected"')).length;
    for (let i = 0; i < 100 && released() === 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(released() >= 1, 'no memory release was logged within 10 s of quiet');
    assert.equal((await stopServe(serving)).code, 0);
  });

  test('npm start, as the quick start runs it: a SIGTERM to npm itself stops the server and PostgreSQL', async () => {
    const own = await newFolder('pgbg-npmstart-');
    const child = spawn('npm', ['start', '--', '--port', String(await freePort()), '--data', own, '--log-level', 'warn'], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', () => undefined);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      for (let i = 0; i < 1200 && !/^ready: /m.test(out) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(out, /^ready: /m, 'npm start printed the ready line');
      const pidFile = path.join(own, 'pg', 'postmaster.pid');
      const postmaster = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
      process.kill(child.pid!, 'SIGTERM'); // npm's own process, not the group
      await exited;
      // The server and the embedded PostgreSQL stop after it (bounded wait).
      for (let i = 0; i < 300 && alive(postmaster); i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(alive(postmaster), false, 'PostgreSQL stopped');
      assert.match(out, /^stopped: /m, 'the server reported its stop');
    } finally {
      // (Its PostgreSQL, if left, is stopped after the test; the folder removed at the end.)
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* already gone */ }
    }
  });
});
