/**
 * A newer pgbg replaces an install of an earlier revision of the baseline in place: every
 * function is made afresh, and the roles keep their secrets (their user mappings and the
 * server's verifiers stay), so nobody has to be granted again.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { install } from '../../src/install/install.js';
import { createLoginRole, createTestDatabase, serverUrl, urlFor, withClient } from '../helpers/db.js';
import { startTestApi, type TestApi } from '../helpers/sql-api.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let api: TestApi;
before(async () => {
  db = await createTestDatabase();
  api = await startTestApi(db.url);
});
after(async () => {
  await api?.close();
  await db?.drop();
});

test('an install of an earlier revision is replaced in place; the roles keep their secrets', async () => {
  const role = await createLoginRole('pgbg_upg');
  const endpoint = { host: '127.0.0.1', port: api.server.port };
  const launch = "SELECT * FROM pg_background_result(pg_background_launch('SELECT current_user::text')) AS (who text)";
  try {
    await withClient(serverUrl(), (c) => c.query(`GRANT CONNECT ON DATABASE ${db.name} TO ${role.name}`));
    await withClient(db.url, (c) => c.query('SELECT grant_pg_background_privileges($1)', [role.name]));
    api.logins.set(role.name, urlFor(db.name, role));
    const secretOf = () => withClient(urlFor(db.name, role), async (c) =>
      (await c.query("SELECT substr(o, 10) AS s FROM pg_user_mappings m, unnest(m.umoptions) o WHERE m.usename = current_user AND o LIKE 'password=%'")).rows[0].s as string);
    const before = await secretOf();
    await withClient(urlFor(db.name, role), async (c) => assert.deepEqual((await c.query(launch)).rows, [{ who: role.name }]));
    await withClient(db.url, async (c) => {
      await c.query("UPDATE pgbg_private.install SET revision = 'an-earlier-one'");
      await c.query("CREATE OR REPLACE FUNCTION pgbg_private.ms(setting text) RETURNS int8 LANGUAGE sql AS 'SELECT 1'");
      assert.deepEqual(await install(c, { endpoint }), { installed: true, upgradedFrom: '1.8 an-earlier-one', schema: 'public', apiVersion: '1.8' });
      assert.match((await c.query("SELECT prosrc FROM pg_proc WHERE proname = 'ms' AND pronamespace = 'pgbg_private'::regnamespace")).rows[0].prosrc, /date_part/);
      assert.deepEqual(await install(c, { endpoint }), { installed: false, schema: 'public', apiVersion: '1.8' });
    });
    assert.equal(await secretOf(), before, 'the same secret');
    await withClient(urlFor(db.name, role), async (c) => assert.deepEqual((await c.query(launch)).rows, [{ who: role.name }]));
  } finally {
    await withClient(db.url, (c) => c.query('SELECT revoke_pg_background_privileges($1)', [role.name]));
    await withClient(serverUrl(), (c) => c.query(`REVOKE ALL ON DATABASE ${db.name} FROM ${role.name}; DROP ROLE ${role.name}`));
  }
});
