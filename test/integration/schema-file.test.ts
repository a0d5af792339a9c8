/** src/install/schema-<version>.sql is what install creates: each surface installed afresh, dumped, compared. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { install, uninstall } from '../../src/install/install.js';
import { API_VERSIONS } from '../../src/install/script.js';
import { dumpSchema } from '../../src/install/schema-dump.js';
import { createTestDatabase, withClient } from '../helpers/db.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
before(async () => {
  db = await createTestDatabase();
});
after(() => db?.drop());

for (const version of API_VERSIONS) {
  test(`the committed schema-${version}.sql matches what install creates (regenerate with npm run schema)`, async () => {
    const committed = await readFile(path.resolve(import.meta.dirname, `../../src/install/schema-${version}.sql`), 'utf8');
    const made = await withClient(db.url, async (c) => {
      await uninstall(c);
      await install(c, { endpoint: { host: '127.0.0.1', port: 1 }, apiVersion: version });
      return dumpSchema(c);
    });
    assert.ok(made.includes('CREATE OR REPLACE FUNCTION public.pg_background_launch_v2'), 'the dump has the API');
    assert.equal(made, committed);
  });
}
