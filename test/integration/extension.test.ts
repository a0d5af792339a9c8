/**
 * CREATE EXTENSION pg_background, and bringing an older one up to date: the
 * extension keeps its version (1.8), so pgbg applies the migrations it lacks.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { serverFileOwner } from '../../src/embedded/postgres.js';
import { writeExtension } from '../../src/install/extension.js';
import { install, migrations, uninstall, upgradeExtension } from '../../src/install/install.js';
import { createTestDatabase, serverUrl, withClient } from '../helpers/db.js';

describe('CREATE EXTENSION pg_background', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let extensionDir: string;
  let writable = true;
  const connstr = 'host=127.0.0.1 port=9 user=pgbg password=not-used-here';

  before(async () => {
    db = await createTestDatabase();
    const share = await withClient(serverUrl(), async (c) => (await c.query("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'")).rows[0].setting as string);
    extensionDir = path.join(share, 'extension');
    writable = await access(extensionDir, constants.W_OK).then(() => true, () => false);
  });
  after(async () => {
    if (writable) await writeExtension(extensionDir, connstr, serverFileOwner());
    await db?.drop();
  });

  test('an extension made by an older pgbg is upgraded in place; install and uninstall know it', async (t) => {
    if (!writable) {
      t.skip(`the server's extension folder ${extensionDir} is not writable here`);
      return;
    }
    const all = (await migrations()).map((m) => m.version);
    // As made before 0006, which added pgbg_private.carried_settings().
    const older = all.filter((v) => v < 6);
    const newer = all.filter((v) => v >= 6);
    await writeExtension(extensionDir, connstr, serverFileOwner(), older.at(-1));
    await withClient(db.url, async (c) => {
      await c.query('CREATE EXTENSION pg_background');
      const versions = async () => (await c.query('SELECT version FROM pgbg_private.migrations ORDER BY version')).rows.map((r) => r.version as number);
      assert.deepEqual(await versions(), older);
      assert.equal((await c.query("SELECT to_regprocedure('pgbg_private.carried_settings()') AS f")).rows[0].f, null);
      assert.deepEqual(await upgradeExtension(c), newer);
      assert.deepEqual(await versions(), all);
      // Every dblink function the upgraded API calls is bound: PL/pgSQL checks the names only when a call runs.
      const unbound = await c.query(`SELECT DISTINCT m[1] AS fn
          FROM pg_catalog.pg_proc p, regexp_matches(p.prosrc, 'pgbg_private\\.(dblink\\w*)', 'g') AS m
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc q WHERE q.proname = m[1] AND q.pronamespace = 'pgbg_private'::regnamespace)`);
      assert.deepEqual(unbound.rows, []);
      assert.ok((await c.query("SELECT count(*)::int AS n FROM pg_proc WHERE prosrc LIKE '%pgbg_private.dblink_is_busy%'")).rows[0].n > 0, 'the check sees the calls');
      assert.notEqual((await c.query("SELECT to_regprocedure('pgbg_private.carried_settings()') AS f")).rows[0].f, null);
      assert.deepEqual(await upgradeExtension(c), [], 'a second run has nothing to do');
      assert.deepEqual(await install(c, { serverConnstr: connstr }), { applied: [], schema: 'public' });
      assert.deepEqual(await uninstall(c), { removed: true });
      assert.equal((await c.query("SELECT count(*)::int AS n FROM pg_extension WHERE extname = 'pg_background'")).rows[0].n, 0);
      assert.equal((await c.query("SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'pgbg_private'")).rows[0].n, 0);
      assert.equal((await c.query("SELECT count(*)::int AS n FROM pg_proc WHERE proname LIKE 'pg_background%'")).rows[0].n, 0);
    });
  });
});
