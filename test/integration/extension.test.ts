/**
 * CREATE EXTENSION pg_background, and bringing one made by an earlier pgbg up
 * to date in place: its private objects are replaced, the new ones adopted by
 * the extension, and its shared secret stops working.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { writeExtension } from '../../src/install/extension.js';
import { install, uninstall } from '../../src/install/install.js';
import { createLoginRole, createTestDatabase, serverUrl, urlFor, withClient } from '../helpers/db.js';
import { writeLegacyExtension } from '../helpers/legacy-install.js';
import { startTestApi, type TestApi } from '../helpers/sql-api.js';

describe('CREATE EXTENSION pg_background', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let api: TestApi;
  let extensionDir: string;
  let writable = true;

  before(async () => {
    db = await createTestDatabase();
    api = await startTestApi(db.url, { install: false });
    const share = await withClient(serverUrl(), async (c) => (await c.query("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'")).rows[0].setting as string);
    extensionDir = path.join(share, 'extension');
    writable = await access(extensionDir, constants.W_OK).then(() => true, () => false);
  });
  after(async () => {
    if (writable) await writeExtension(extensionDir, { host: '127.0.0.1', port: 9 });
    await api?.close();
    await db?.drop();
  });

  test('CREATE EXTENSION VERSION 1.8 makes the 1.8 API, with a secret for the role that made it and none in the script', async (t) => {
    if (!writable) {
      t.skip(`the server's extension folder ${extensionDir} is not writable here`);
      return;
    }
    await writeExtension(extensionDir, { host: '127.0.0.1', port: api.server.port });
    await withClient(db.url, async (c) => {
      await c.query("CREATE EXTENSION pg_background VERSION '1.8'");
      // The session that made it answers the defaults at once, as with the C extension.
      assert.equal((await c.query('SHOW pg_background.max_workers')).rows[0]['pg_background.max_workers'], '16');
      const r = await c.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT current_user::text')) AS (who text)");
      assert.deepEqual(r.rows, [{ who: new URL(db.url).username }]);
      // A member, not only the role that made the extension, can use it.
      const member = await createLoginRole('pgbg_extmember');
      try {
        await c.query(`GRANT CONNECT ON DATABASE ${db.name} TO ${member.name}`);
        assert.equal((await c.query('SELECT grant_pg_background_privileges($1) AS ok', [member.name])).rows[0].ok, true);
        api.logins.set(member.name, urlFor(db.name, member));
        await withClient(urlFor(db.name, member), async (m) => {
          const mine = await m.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT current_user::text')) AS (who text)");
          assert.deepEqual(mine.rows, [{ who: member.name }]);
        });
        // A newer pgbg replaces an earlier revision of the extension's API in place; the member keeps its secret.
        await c.query("UPDATE pgbg_private.install SET revision = 'an-earlier-one'");
        assert.deepEqual(await install(c, { endpoint: { host: '127.0.0.1', port: api.server.port } }), { installed: true, upgradedFrom: '1.8 an-earlier-one', schema: 'public', apiVersion: '1.8' });
        const loose = await c.query(`SELECT p.oid::regprocedure::text AS f FROM pg_proc p WHERE p.pronamespace = 'pgbg_private'::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')`);
        assert.deepEqual(loose.rows, [], 'every function is the extension\'s');
        await withClient(urlFor(db.name, member), async (m) => {
          assert.deepEqual((await m.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT 2')) AS (x int)")).rows, [{ x: 2 }]);
        });
      } finally {
        await c.query('SELECT revoke_pg_background_privileges($1)', [member.name]);
        await c.query(`REVOKE ALL ON DATABASE ${db.name} FROM ${member.name}; DROP ROLE ${member.name}`);
      }
      assert.deepEqual(await install(c, { endpoint: { host: '127.0.0.1', port: api.server.port } }), { installed: false, schema: 'public', apiVersion: '1.8' });
      assert.deepEqual(await uninstall(c), { removed: true });
      assert.equal((await c.query("SELECT count(*)::int AS n FROM pg_foreign_server WHERE srvname = 'pgbg'")).rows[0].n, 0);
      assert.equal((await c.query("SELECT count(*)::int AS n FROM pg_user_mappings WHERE srvname = 'pgbg'")).rows[0].n, 0);
    });
  });

  test('CREATE EXTENSION gives 2.0; ALTER EXTENSION UPDATE TO 2.0 turns a 1.8 one into it, with a live session', async (t) => {
    if (!writable) {
      t.skip(`the server's extension folder ${extensionDir} is not writable here`);
      return;
    }
    await writeExtension(extensionDir, { host: '127.0.0.1', port: api.server.port });
    await withClient(db.url, async (c) => {
      await c.query('CREATE EXTENSION pg_background');
      assert.equal((await c.query("SELECT extversion FROM pg_extension WHERE extname = 'pg_background'")).rows[0].extversion, '2.0');
      assert.equal((await c.query("SELECT (pg_background_run('SELECT 1')).completed AS ok")).rows[0].ok, true);
      await c.query('DROP EXTENSION pg_background CASCADE');
    });
    await withClient(db.url, async (c) => {
      await c.query("CREATE EXTENSION pg_background VERSION '1.8'");
      const h = (await c.query("SELECT (h).pid, (h).cookie FROM (SELECT pg_background_launch_v2('SELECT 3') AS h) s")).rows[0];
      await c.query("ALTER EXTENSION pg_background UPDATE TO '2.0'");
      // The same session: its handle is read through 2.0's names.
      assert.deepEqual((await c.query('SELECT * FROM pg_background_result($1, $2) AS (x int)', [h.pid, h.cookie])).rows, [{ x: 3 }]);
      assert.equal((await c.query("SELECT count(*)::int AS n FROM pg_proc WHERE proname LIKE 'pg\\_background\\_%'")).rows[0].n, 51);
      const loose = await c.query(`SELECT p.oid::regprocedure::text AS f FROM pg_proc p WHERE p.pronamespace IN ('public'::regnamespace, 'pgbg_private'::regnamespace)
        AND (p.proname LIKE 'pg\\_background%' OR p.pronamespace = 'pgbg_private'::regnamespace)
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')`);
      assert.deepEqual(loose.rows, [], 'every function is the extension\'s');
      assert.equal((await install(c, { endpoint: { host: '127.0.0.1', port: api.server.port } })).installed, false, 'install sees an up-to-date 2.0');
      assert.deepEqual(await uninstall(c), { removed: true });
    });
  });

  test('an extension made by an earlier pgbg is upgraded in place; install and uninstall know it', async (t) => {
    if (!writable) {
      t.skip(`the server's extension folder ${extensionDir} is not writable here`);
      return;
    }
    await writeLegacyExtension(extensionDir, 'host=127.0.0.1 port=9 user=pgbg password=the-old-shared-secret');
    await withClient(db.url, async (c) => {
      await c.query('CREATE EXTENSION pg_background');
      assert.notEqual((await c.query("SELECT to_regclass('pgbg_private.migrations') AS t")).rows[0].t, null);
      const report = await install(c, { endpoint: { host: '127.0.0.1', port: api.server.port } });
      assert.deepEqual(report, { installed: true, upgradedFrom: 'migrations', schema: 'public', apiVersion: '1.8' });
      // Nothing of the old chain is left, nothing is SECURITY DEFINER but the two grant helpers, and everything
      // of the API belongs to the extension.
      assert.equal((await c.query("SELECT to_regclass('pgbg_private.migrations') AS t")).rows[0].t, null);
      assert.equal((await c.query("SELECT count(*)::int AS n FROM pg_proc WHERE proname = 'conn' AND pronamespace = 'pgbg_private'::regnamespace")).rows[0].n, 0);
      const definers = await c.query("SELECT proname FROM pg_proc WHERE prosecdef AND pronamespace IN ('public'::regnamespace, 'pgbg_private'::regnamespace) ORDER BY 1");
      assert.deepEqual(definers.rows.map((r) => r.proname), ['grant_pg_background_privileges', 'revoke_pg_background_privileges']);
      const loose = await c.query(`SELECT p.oid::regprocedure::text AS f FROM pg_proc p WHERE p.pronamespace = 'pgbg_private'::regnamespace
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')`);
      assert.deepEqual(loose.rows, []);
      assert.ok(!JSON.stringify((await c.query('SELECT * FROM pgbg_private.server')).rows).includes('the-old-shared-secret'));
      const r = await c.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT 7')) AS (x int)");
      assert.deepEqual(r.rows, [{ x: 7 }]);
      assert.deepEqual(await install(c, { endpoint: { host: '127.0.0.1', port: api.server.port } }), { installed: false, schema: 'public', apiVersion: '1.8' });
      assert.deepEqual(await uninstall(c), { removed: true });
      assert.equal((await c.query("SELECT count(*)::int AS n FROM pg_extension WHERE extname = 'pg_background'")).rows[0].n, 0);
      assert.equal((await c.query("SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'pgbg_private'")).rows[0].n, 0);
      assert.equal((await c.query("SELECT count(*)::int AS n FROM pg_proc WHERE proname LIKE 'pg_background%'")).rows[0].n, 0);
    });
  });
});
