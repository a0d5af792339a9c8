/** The README's SQL examples, 2.0 and 1.8, run as written against each surface. */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import type { ApiVersion } from '../../src/install/script.js';
import { createTestDatabase } from '../helpers/db.js';
import { startTestApi } from '../helpers/sql-api.js';

/** The statements of the README's SQL block that starts with `-- pg_background <version>`. */
async function readmeStatements(version: ApiVersion): Promise<string[]> {
  const readme = await readFile(path.resolve(import.meta.dirname, '../../README.md'), 'utf8');
  const block = [...readme.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.startsWith(`-- pg_background ${version} `));
  assert.ok(block, `the README has a ${version} block`);
  const code = block.split('\n').map((line) => line.replace(/\s*--.*$/, '')).join('\n');
  return code.split(';').map((s) => s.trim()).filter((s) => s !== '');
}

const dbs: Awaited<ReturnType<typeof createTestDatabase>>[] = [];
after(async () => {
  for (const db of dbs) await db.drop();
});

for (const version of ['2.0', '1.8'] as const) {
  test(`the README's pg_background ${version} examples run as written`, async () => {
    const db = await createTestDatabase();
    dbs.push(db);
    const api = await startTestApi(db.url, { apiVersion: version });
    const c = new pg.Client({ connectionString: api.callerUrl });
    await c.connect();
    try {
      await c.query('CREATE TABLE audit (msg text); CREATE TABLE big AS SELECT g AS x FROM generate_series(1, 1000) g');
      const statements = await readmeStatements(version);
      assert.ok(statements.length >= 5, `${statements.length} statements`);
      for (const sql of statements) await c.query(sql).catch((err: Error) => assert.fail(`${sql}\n→ ${err.message}`));
      // Both blocks write one autonomous audit row.
      for (let i = 0; i < 100 && (await c.query('SELECT count(*)::int AS n FROM audit')).rows[0].n === 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal((await c.query('SELECT count(*)::int AS n FROM audit')).rows[0].n, 1);
      process.stdout.write(`# README ${version}: ${statements.length} statements ran\n`);
    } finally {
      await c.end();
      await api.close();
    }
  });
}
