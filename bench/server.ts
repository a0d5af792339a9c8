/**
 * The server under test: `pgbg serve --embedded` as a child process, started
 * by the `pgbg` command itself (not through npm), which execs Node: the child's
 * pid is the pgbg server, whose RSS the memory figures are about.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { freePort } from '../src/embedded/postgres.js';
import { settlesWithin, withTimeout } from './util.js';

export interface ServerUnderTest {
  readonly pid: number;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
  readonly password: string;
  /** libpq key=value string, for dblink. */
  readonly connstr: string;
  readonly dataDir: string;
  /** Resident set size of the pgbg server process, in bytes. */
  rss(): Promise<number>;
  /** CPU time (user + system, all threads) the pgbg server process has used, in ms. */
  cpuMs(): Promise<number>;
  stop(): Promise<void>;
}

export interface StartOptions {
  root: string;
  dataDir: string;
  /** Directory for `--cpu-prof` output of the server; no profiling when undefined. */
  cpuProfileDir?: string | undefined;
  logLevel?: string;
  readyTimeoutMs?: number;
}

export async function startServer(options: StartOptions): Promise<ServerUnderTest> {
  // A fresh cluster each run: figures must not depend on what an earlier run left behind.
  await rm(options.dataDir, { recursive: true, force: true });
  await mkdir(options.dataDir, { recursive: true });
  // As root the embedded PostgreSQL runs as the `postgres` user, which must reach its data folder.
  await chmod(options.dataDir, 0o755);
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}` };
  if (options.cpuProfileDir) {
    await mkdir(options.cpuProfileDir, { recursive: true });
    env.PGBG_NODE_FLAGS = `--cpu-prof --cpu-prof-dir=${options.cpuProfileDir}`;
  }
  const args = [
    'serve', '--embedded',
    '--data', options.dataDir, '--port', String(port), '--log-level', options.logLevel ?? 'warn',
    // The memory section holds 200 unread jobs, each on its own worker.
    '--max-connections', '256', '--max-connections-per-login', '256',
    // Memory "after the jobs ended" is read once the settle time has let idle workers close
    // (within 1.5 × this) and the server, quiet, has released memory (3 s later).
    '--idle-timeout-ms', '5000',
  ];
  // The installed `pgbg` command (`npm run bench` builds first), with this Node first on its PATH.
  const child = spawn(path.join(options.root, 'bin/pgbg'), args, { cwd: options.root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    // Keep only the tail: enough to explain a failure, bounded however chatty the server is.
    stderr = (stderr + d.toString()).slice(-8000);
  });
  try {
    const url = await withTimeout(readyLine(child), options.readyTimeoutMs ?? 120_000, 'pgbg serve ready line');
    const password = (await readFile(path.join(options.dataDir, 'pg.password'), 'utf8')).trim();
    const u = new URL(url);
    const host = u.hostname;
    const user = decodeURIComponent(u.username);
    const database = decodeURIComponent(u.pathname.slice(1));
    const serverPort = Number(u.port);
    if (host !== '127.0.0.1') throw new Error(`the server is not on loopback: ${url}`);
    return {
      pid: child.pid!,
      host,
      port: serverPort,
      user,
      database,
      password,
      connstr: `host=${host} port=${serverPort} dbname=${database} user=${user} password=${password}`,
      dataDir: options.dataDir,
      rss: () => rssOf(child.pid!),
      cpuMs: () => cpuMsOf(child.pid!),
      stop: () => stopChild(child, options.dataDir),
    };
  } catch (err) {
    await stopChild(child, options.dataDir);
    throw new Error(`${(err as Error).message}\nserver stderr:\n${stderr}`, { cause: err });
  }
}

function readyLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /^ready: (postgresql:\/\/\S+)$/m.exec(out);
      if (m) {
        child.stdout!.off('data', onData);
        child.off('exit', onExit);
        // Keep draining stdout so the child never blocks on a full pipe.
        child.stdout!.resume();
        resolve(m[1]!);
      }
    };
    const onExit = (code: number | null) => reject(new Error(`pgbg serve exited with ${code} before its ready line; stdout: ${out}`));
    child.stdout!.on('data', onData);
    child.once('exit', onExit);
  });
}

export async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** Linux reports process CPU time in clock ticks of this many per second. */
export const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

export interface ProcessCounters {
  /** CPU time in user mode, all threads, in ms. */
  userMs: number;
  /** CPU time in the kernel, all threads, in ms. */
  systemMs: number;
  minorFaults: number;
}

export async function countersOf(pid: number): Promise<ProcessCounters> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may itself hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return {
    minorFaults: Number(fields[7]),
    userMs: (Number(fields[11]) * 1000) / CLOCK_TICKS,
    systemMs: (Number(fields[12]) * 1000) / CLOCK_TICKS,
  };
}

export async function cpuMsOf(pid: number): Promise<number> {
  const { userMs, systemMs } = await countersOf(pid);
  return userMs + systemMs;
}

/**
 * SIGTERM lets serve stop its jobs, its engine and the embedded PostgreSQL.
 * SIGKILL is the last resort; it would orphan the postmaster, so that one is
 * then stopped by its own pid (from its pid file: a process this run started).
 */
async function stopChild(child: ChildProcess, dataDir: string): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  if (await settlesWithin(exited, 45_000)) return;
  child.kill('SIGKILL');
  await settlesWithin(exited, 5_000);
  try {
    const postmaster = Number((await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
    // SIGINT is PostgreSQL's "fast shutdown".
    if (Number.isInteger(postmaster) && postmaster > 1) process.kill(postmaster, 'SIGINT');
  } catch {
    // no pid file: the postmaster is gone
  }
}
