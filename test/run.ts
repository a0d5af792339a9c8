/**
 * Test entry point: starts one real PostgreSQL for the whole run (embedded, unless
 * PGBG_TEST_DATABASE_URL names an existing server), then runs every test file
 * with node's test runner against it.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, chmod, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startEmbeddedPostgres, type EmbeddedServer } from '../src/embedded/postgres.js';

async function testFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await testFiles(p)));
    else if (entry.name.endsWith('.test.ts')) out.push(p);
  }
  return out.sort();
}

async function main(): Promise<number> {
  const root = path.resolve(import.meta.dirname, '..');
  // File substrings select files; options (--test-name-pattern=…, --test-only) go to node's test runner.
  const options = process.argv.slice(2).filter((a) => a.startsWith('--'));
  const filter = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  let files = await testFiles(path.join(root, 'test'));
  if (filter.length > 0) files = files.filter((f) => filter.some((x) => f.includes(x)));

  let server: EmbeddedServer | undefined;
  let tmp: string | undefined;
  const env = { ...process.env };
  if (!env.PGBG_TEST_DATABASE_URL) {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'pgbg-test-'));
    await chmod(tmp, 0o755);
    const version = env.PGBG_TEST_PG_VERSION;
    process.stdout.write(`starting embedded PostgreSQL${version ? ' ' + version : ''} in ${tmp}\n`);
    server = await startEmbeddedPostgres({ dataDir: path.join(tmp, 'data'), ...(env.PGBG_TEST_PG_LOG ? { onLog: (line: string) => process.stderr.write(`[postgres] ${line}\n`) } : {}) });
    env.PGBG_TEST_DATABASE_URL = server.url('postgres');
    env.PGBG_TEST_SOCKET_DIR = server.socketDir;
  }
  try {
    const code = await new Promise<number>((resolve) => {
      const child = spawn(
        process.execPath,
        [
          '--import', 'tsx', '--import', pathToFileURL(path.join(root, 'test/helpers/blocking-stdout.ts')).href,
          '--test', '--test-reporter=spec', '--test-concurrency=1', '--test-timeout=180000', '--test-force-exit', ...options, ...files,
        ],
        { stdio: 'inherit', env },
      );
      child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0)));
    });
    return code;
  } finally {
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
