/**
 * `pgbg` as a user runs it, in a process of its own: `pgbg serve` children that
 * fault tests signal (SIGKILL, SIGSTOP), and one-shot commands (`pgbg install`).
 * Every child is killed at the end of the test file if a test left it running.
 */
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { after } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = ['--import', 'tsx', 'src/cli/main.ts'];

export interface ServeProcess {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  readonly pid: number;
  /** What it printed on stdout so far. */
  output(): string;
  /** Its log (stderr) so far. */
  log(): string;
  /** Resolves once `pattern` appears in stdout or the log; rejects after `ms`. */
  waitFor(pattern: RegExp, ms: number, where?: 'output' | 'log'): Promise<string>;
  /** SIGINT, then SIGKILL if it has not exited within `ms`; resolves to the exit code (null if killed). */
  stop(ms?: number): Promise<number | null>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<number | null>;
}

const children = new Set<ServeProcess>();
after(() => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
});

export async function startServeProcess(args: string[], readyMs = 120_000): Promise<ServeProcess> {
  const child = spawn(process.execPath, [...CLI, 'serve', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let log = '';
  const waiters = new Set<() => void>();
  const changed = () => {
    for (const w of waiters) w();
  };
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    changed();
  });
  child.stderr.on('data', (d: Buffer) => {
    log += d.toString();
    changed();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    changed();
    resolve(code);
  }));
  const waitFor = (pattern: RegExp, ms: number, where: 'output' | 'log' = 'output') =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(where === 'output' ? out : log);
        if (m) {
          done();
          resolve(m[0]);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          done();
          reject(new Error(`pgbg serve exited (${child.exitCode ?? child.signalCode}) before ${pattern}; stdout: ${out}\nlog: ${log.slice(-2000)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${pattern} within ${ms} ms; stdout: ${out}\nlog: ${log.slice(-2000)}`));
      }, ms);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  const proc: ServeProcess = {
    child, pid: child.pid!, exited, waitFor,
    output: () => out,
    log: () => log,
    async stop(ms = 60_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), ms);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  children.add(proc);
  void exited.then(() => children.delete(proc));
  try {
    await waitFor(/^ready: \S+$/m, readyMs);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return proc;
}

/** A one-shot `pgbg` command; throws with its output if it fails. */
export function pgbg(...args: string[]): string {
  const r = spawnSync(process.execPath, [...CLI, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`pgbg ${args.join(' ')} failed (${r.status}): ${r.stdout}${r.stderr}`);
  return r.stdout;
}
