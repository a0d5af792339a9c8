/**
 * `pgbg serve --embedded` for the soak, as a child process in a data folder of
 * its own (removed by stop()). The server runs with `--trace-gc`: V8 prints a
 * line per collection on stdout, and the heap after each full collection
 * (Mark-Compact) is what the soak reads as the server's live heap.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { freePort } from '../../src/embedded/postgres.js';
import { rssOf } from '../../bench/server.js';
import { settlesWithin } from '../../bench/util.js';

export interface GcEvent {
  /** performance.now() in this process when the line arrived. */
  at: number;
  kind: string;
  /** Heap used after the collection, MB. */
  afterMb: number;
}

export interface SoakServer {
  readonly pid: number;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  /** Collections so far, in order. */
  readonly gc: GcEvent[];
  rssMb(): Promise<number>;
  /** The last lines the server logged (stderr). */
  logTail(): string;
  /** True while the child runs. */
  alive(): boolean;
  /** Stops the server (SIGTERM, then SIGKILL and the postmaster) and removes its data folder. Idempotent. */
  stop(): Promise<void>;
}

export interface ServerOptions {
  root: string;
  mode: 'build' | 'source';
  maxConnections: number;
  idleTimeoutMs: number;
  /** Where the server's temporary folder goes (default: the OS's). */
  dataRoot?: string | undefined;
  readyTimeoutMs?: number;
  /** Given the stop function as soon as the child runs (before it is ready), to stop it on a signal. */
  register?: (stop: () => Promise<void>) => void;
}

const GC_LINE = /^\[\d+:0x[0-9a-f]+\]\s+[\d.]+ ms: ([A-Za-z-]+(?: \([a-z]+\))?) [\d.]+ \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB/;

export async function startSoakServer(options: ServerOptions): Promise<SoakServer> {
  const tmp = await mkdtemp(path.join(options.dataRoot ?? os.tmpdir(), 'pgbg-soak-'));
  // As root the embedded PostgreSQL runs as the unprivileged `postgres` user, which must reach pg/ inside.
  await chmod(tmp, 0o755);
  const data = path.join(tmp, 'data');
  const port = await freePort();
  const args = [
    'serve', '--embedded', '--data', data, '--port', String(port), '--log-level', 'warn',
    '--max-connections', String(options.maxConnections), '--max-connections-per-login', String(options.maxConnections),
    '--idle-timeout-ms', String(options.idleTimeoutMs), '--release-memory-ms', '500', '--grace-ms', '5000',
  ];
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}` };
  let child: ChildProcessByStdio<null, Readable, Readable>;
  if (options.mode === 'build') {
    env.PGBG_NODE_FLAGS = '--trace-gc';
    child = spawn(path.join(options.root, 'bin/pgbg'), args, { cwd: options.root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  } else {
    child = spawn(process.execPath, ['--trace-gc', '--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: options.root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  }
  const gc: GcEvent[] = [];
  let stdout = '';
  let pending = '';
  let stderr = '';
  let ready: ((url: string) => void) | undefined;
  const readyUrl = new Promise<string>((resolve) => (ready = resolve));
  child.stdout.on('data', (d: Buffer) => {
    pending += d.toString();
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      const m = GC_LINE.exec(line);
      if (m) {
        gc.push({ at: performance.now(), kind: m[1]!, afterMb: Number(m[2]) });
        if (gc.length > 200_000) gc.splice(0, 100_000);
        continue;
      }
      stdout = (stdout + line + '\n').slice(-8000);
      const r = /^ready: (postgresql:\/\/\S+)$/.exec(line);
      if (r) ready?.(r[1]!);
    }
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-8000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stopped: Promise<void> | undefined;
  const stop = () => (stopped ??= stopChild(child, exited, data).finally(() => rm(tmp, { recursive: true, force: true })));
  options.register?.(stop);
  try {
    const url = await Promise.race([
      readyUrl,
      exited.then(() => Promise.reject(new Error(`pgbg serve exited (${child.exitCode ?? child.signalCode}) before its ready line`))),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('pgbg serve: no ready line in time')), options.readyTimeoutMs ?? 120_000).unref()),
    ]);
    const u = new URL(url);
    if (u.hostname !== '127.0.0.1') throw new Error(`the server is not on loopback: ${url}`);
    const password = (await readFile(path.join(data, 'pg.password'), 'utf8')).trim();
    return {
      pid: child.pid!, host: u.hostname, port: Number(u.port), user: decodeURIComponent(u.username), password,
      database: decodeURIComponent(u.pathname.slice(1)), gc,
      rssMb: async () => (await rssOf(child.pid!)) / (1024 * 1024),
      logTail: () => stderr,
      alive: () => child.exitCode === null && child.signalCode === null,
      stop,
    };
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\nstdout:\n${stdout}\nstderr:\n${stderr}`, { cause: err });
  }
}

/**
 * SIGTERM lets serve stop its jobs and the embedded PostgreSQL; SIGKILL is the
 * last resort, and then the postmaster (which it would orphan) is stopped by
 * the pid in its own pid file: a process this run started.
 */
async function stopChild(child: ChildProcessByStdio<null, Readable, Readable>, exited: Promise<void>, data: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    if (!(await settlesWithin(exited, 30_000))) {
      child.kill('SIGKILL');
      await settlesWithin(exited, 5_000);
    }
  }
  try {
    const postmaster = Number((await readFile(path.join(data, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
    const cmdline = Number.isInteger(postmaster) && postmaster > 1 ? await readFile(`/proc/${postmaster}/cmdline`, 'utf8').catch(() => '') : '';
    if (cmdline.includes('postgres')) {
      process.kill(postmaster, 'SIGINT'); // PostgreSQL's fast shutdown
      for (let i = 0; i < 100; i++) {
        try {
          process.kill(postmaster, 0);
        } catch {
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch {
    // no pid file, or the postmaster is gone: PostgreSQL stopped cleanly
  }
}
