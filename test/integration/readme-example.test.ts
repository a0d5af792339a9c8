import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { createTestDatabase } from '../helpers/db.js';

test('the README example (examples/quickstart.ts) runs as written', async () => {
  const db = await createTestDatabase();
  try {
    const root = path.resolve(import.meta.dirname, '../..');
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/quickstart.ts'], {
      cwd: root,
      env: { ...process.env, DATABASE_URL: db.url },
      timeout: 60_000,
    });
    assert.match(stdout, /audit rows: 1\n/);
    assert.match(stdout, /job pid=\d+ \[/);
    assert.match(stdout, /sum: 5000050000\n/);
  } finally {
    await db.drop();
  }
});
