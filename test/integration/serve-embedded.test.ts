/**
 * `npm start` (= pgbg serve --embedded) as a user runs it: a subprocess that
 * prints the ready line, serves the SQL API, and stops cleanly on Ctrl-C.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../../src/embedded/postgres.js';

test('pgbg serve --embedded: ready line, the SQL API answers 42, Ctrl-C stops everything', async () => {
  const root = path.resolve(import.meta.dirname, '../..');
  const data = await mkdtemp(path.join(os.tmpdir(), 'pgbg-serve-'));
  await chmod(data, 0o755);
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--embedded', '--port', String(port), '--data', data, '--log-level', 'warn'], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    let out = '';
    const ready = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ready line in 90 s; got: ${out}`)), 90_000);
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /^ready: (postgresql:\/\/\S+)$/m.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)));
    });
    assert.equal(ready, `postgresql://postgres@127.0.0.1:${port}/postgres`);
    const password = (await readFile(path.join(data, 'pg.password'), 'utf8')).trim();
    const u = new URL(ready);
    const c = new pg.Client({ host: u.hostname, port: Number(u.port), user: u.username, database: u.pathname.slice(1), password });
    await c.connect();
    try {
      const r = await c.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT 42')) AS (x int)");
      assert.deepEqual(r.rows, [{ x: 42 }]);
    } finally {
      await c.end();
    }
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGINT');
    assert.equal(await exit, 0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await rm(data, { recursive: true, force: true });
  }
});
