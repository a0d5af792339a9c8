/**
 * `npm run upstream-suite -- <suite.sql> <expected.out>`: runs a pg_background
 * regression suite (upstream's `sql/pg_background.sql` and its
 * `expected/pg_background.out`, which pgbg does not ship) unchanged against
 * `pgbg serve --embedded`, in a fresh database, as pg_regress would (psql -X -a
 * -q reading the file on stdin, C messages), and prints the difference. Needs
 * `psql` on PATH. Exits 0 when the output is the expected one.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const [suite, expected] = process.argv.slice(2);
if (!suite || !expected) {
  process.stderr.write('usage: npm run upstream-suite -- <suite.sql> <expected.out>\n');
  process.exit(2);
}
const root = path.resolve(import.meta.dirname, '..');
const tmp = await mkdtemp(path.join(os.tmpdir(), 'pgbg-upstream-'));
// As root, the embedded PostgreSQL runs as an unprivileged user, which must reach its data folder.
await chmod(tmp, 0o755);
const data = path.join(tmp, 'data');
const server = spawn(process.execPath, [path.join(root, 'dist/cli/main.js'), 'serve', '--embedded', '--data', data], { stdio: ['ignore', 'pipe', 'pipe'] });
let output = '';
const exited = new Promise((resolve) => server.once('exit', resolve));
server.stdout.on('data', (b: Buffer) => (output += b.toString()));
server.stderr.on('data', (b: Buffer) => (output += b.toString()));
try {
  let url: string | undefined;
  for (let i = 0; i < 600 && !url && server.exitCode === null; i++) {
    url = /^ready: (\S+)$/m.exec(output)?.[1];
    if (!url) await sleep(100);
  }
  if (!url) throw new Error(`the server did not get ready:\n${output}`);
  const env = { ...process.env, PGPASSWORD: (await readFile(path.join(data, 'pg.password'), 'utf8')).trim(), LC_MESSAGES: 'C', PGTZ: 'PST8PDT', PGDATESTYLE: 'Postgres, MDY' };
  const admin = spawnSync('psql', ['-X', '-q', url, '-c', 'CREATE DATABASE contrib_regression'], { env, encoding: 'utf8' });
  if (admin.status !== 0) throw new Error(admin.stderr);
  const target = url.replace(/\/postgres$/, '/contrib_regression');
  // Its output and its messages interleaved in one file, as pg_regress writes them.
  const result = path.join(tmp, 'result.out');
  const out = await open(result, 'w');
  spawnSync('psql', ['-X', '-a', '-q', target], { env, input: await readFile(suite), stdio: ['pipe', out.fd, out.fd], timeout: 600_000 });
  await out.close();
  const diff = spawnSync('diff', ['-u', expected, result], { encoding: 'utf8' });
  const changed = diff.stdout.split('\n').filter((l) => /^[-+][^-+]/.test(l)).length;
  process.stdout.write(diff.stdout);
  process.stdout.write(`\n${changed === 0 ? 'the output is the expected one' : `${changed} line(s) differ`} (${suite})\n`);
  process.exitCode = changed === 0 ? 0 : 1;
} finally {
  server.kill('SIGTERM');
  await exited;
  await rm(tmp, { recursive: true, force: true });
}
