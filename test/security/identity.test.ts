/**
 * The SQL API tried as an attacker would. mallory is a LOGIN member of
 * pgbackground_role with a secret of her own; eve is a LOGIN role outside it;
 * the victim is the superuser the harness runs as. Each test makes one attack
 * that used to make mallory (or eve) superuser, and asserts that it gains
 * nothing: rolsuper stays false, and the job ran as the role PostgreSQL says
 * the calling code had (current_user at the call site), as the C extension does.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { signRequest } from '../../src/server/request-proof.js';
import { adoptRole, createLoginRole, createTestDatabase, serverUrl, urlFor, withClient } from '../helpers/db.js';
import { sleep, testLogger } from '../helpers/engine.js';
import { startWireServer } from '../../src/server/wire.js';
import { MANAGED, startTestApi, type TestApi } from '../helpers/sql-api.js';

describe('security: a job never runs with more privileges than the code that launched it', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let api: TestApi;
  let victim: pg.Client;
  let mallory: { name: string; password: string };
  let eve: { name: string; password: string };
  let nologin: string;

  const isSuper = async (role: string) =>
    (await victim.query<{ s: boolean }>('SELECT rolsuper AS s FROM pg_roles WHERE rolname = $1', [role])).rows[0]?.s;
  const asMallory = <T>(fn: (c: pg.Client) => Promise<T>) => withClient(urlFor(db.name, mallory), fn);
  /** What mallory's functions recorded: the role they ran as, each time one ran. */
  const truncateSeen = () => withClient(urlFor(db.name), (c) => c.query('TRUNCATE mal.seen'));
  const seen = async () => (await victim.query<{ who: string }>('SELECT who FROM mal.seen ORDER BY at')).rows.map((r) => r.who);
  /**
   * A login to the endpoint as `r<oid>` with `password`, from `c`, refused by the endpoint itself: dblink's
   * 08001 carries libpq's message, which names the server's 28P01 for that login. Given `good`, the same
   * client first logs in with credentials that work, so the refusal is not a server that is down.
   */
  const endpointLogin = (oid: number, password: string) => `host=127.0.0.1 port=${api.server.port} dbname=${db.name} user=r${oid} password=${password}`;
  const loginWorks = async (c: pg.Client, oid: number, password: string) => {
    assert.equal((await c.query('SELECT dblink_connect($1, $2) AS r', ['pgbg_test_up', endpointLogin(oid, password)])).rows[0].r, 'OK');
    await c.query("SELECT dblink_disconnect('pgbg_test_up')");
  };
  const refusedLogin = async (c: pg.Client, oid: number, password: string, good?: { oid: number; password: string }) => {
    if (good) await loginWorks(c, good.oid, good.password);
    const conninfo = endpointLogin;
    await assert.rejects(c.query('SELECT dblink_connect($1, $2)', ['pgbg_test_refused', conninfo(oid, password)]), (err: pg.DatabaseError) => {
      assert.equal(err.code, '08001', err.message);
      assert.equal(err.message, 'could not establish connection');
      assert.match(err.detail ?? '', new RegExp(`^connection to server at "127\\.0\\.0\\.1", port ${api.server.port} failed: FATAL:  password authentication failed for user "r${oid}"`), err.detail);
      return true;
    });
  };

  before(async () => {
    db = await createTestDatabase();
    api = await startTestApi(db.url);
    victim = new pg.Client({ connectionString: api.callerUrl });
    await victim.connect();
    mallory = await createLoginRole('mallory');
    eve = await createLoginRole('eve');
    nologin = `pgbg_nologin_${randomBytes(3).toString('hex')}`;
    await withClient(serverUrl(), (c) => c.query(`GRANT CONNECT, TEMP ON DATABASE ${db.name} TO ${mallory.name}, ${eve.name};
      CREATE ROLE ${nologin} NOLOGIN; GRANT ${nologin} TO ${mallory.name}`));
    await adoptRole(nologin);
    for (const role of [mallory.name, nologin]) {
      assert.equal((await victim.query('SELECT grant_pg_background_privileges($1) AS ok', [role])).rows[0].ok, true);
    }
    api.logins.set(mallory.name, urlFor(db.name, mallory));
    // mallory's schema: a table of what her code saw, and code that records current_user.
    await withClient(urlFor(db.name), (c) => c.query(`CREATE SCHEMA mal AUTHORIZATION ${mallory.name}`));
    await asMallory((c) => c.query(`
      CREATE TABLE mal.seen (who text, ctx text, at timestamptz DEFAULT clock_timestamp());
      GRANT INSERT, SELECT ON mal.seen TO PUBLIC;
      GRANT USAGE ON SCHEMA mal TO PUBLIC;
      CREATE FUNCTION mal.pwn() RETURNS timestamptz LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO mal.seen (who) VALUES (current_user);
        BEGIN EXECUTE format('ALTER ROLE %I SUPERUSER', '${mallory.name}'); EXCEPTION WHEN OTHERS THEN NULL; END;
        RETURN now();
      END $$;
      CREATE FUNCTION mal.pwn_check(v anyelement) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN PERFORM mal.pwn(); RETURN true; END $$;
      GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA mal TO PUBLIC;`));
  });
  after(async () => {
    await withClient(urlFor(db.name), (c) => c.query('DROP SCHEMA IF EXISTS mal CASCADE')).catch(() => undefined);
    for (const role of [mallory.name, nologin]) await victim.query('SELECT revoke_pg_background_privileges($1)', [role]).catch(() => undefined);
    await victim?.end();
    await api?.close();
    await withClient(serverUrl(), async (c) => {
      await c.query(`REVOKE ALL ON DATABASE ${db.name} FROM ${mallory.name}, ${eve.name}`);
      await c.query(`DROP ROLE IF EXISTS ${mallory.name}; DROP ROLE IF EXISTS ${eve.name}; DROP ROLE IF EXISTS ${nologin}`);
    });
    await db?.drop();
  });

  test('1. a temp view shadowing pg_stat_activity is never read by the API', async () => {
    await asMallory(async (c) => {
      await c.query('CREATE TEMP VIEW pg_stat_activity AS SELECT pg_backend_pid() AS pid, mal.pwn() AS backend_start');
      await c.query('CREATE TEMP VIEW pg_user_mappings AS SELECT 1::oid AS umuser, mal.pwn() AS umoptions, NULL::name AS srvname, NULL::name AS usename');
      const r = await c.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT current_user::text')) AS (who text)");
      assert.deepEqual(r.rows, [{ who: mallory.name }]);
    });
    assert.deepEqual(await seen(), [], 'mallory\'s view was not evaluated');
    assert.equal(await isSuper(mallory.name), false);
  });

  test('2. a temp domain shadowing int8 is never used by the API', async () => {
    await asMallory(async (c) => {
      await c.query('CREATE DOMAIN pg_temp.int8 AS pg_catalog.int8 CHECK (mal.pwn_check(VALUE))');
      await c.query('CREATE DOMAIN pg_temp.int4 AS pg_catalog.int4 CHECK (mal.pwn_check(VALUE))');
      await c.query('CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (mal.pwn_check(VALUE))');
      await c.query('SELECT * FROM pg_background_stats_v2()');
      const h = (await c.query("SELECT * FROM pg_background_launch_v2('SELECT 1')")).rows[0];
      await c.query('SELECT pg_background_wait_v2($1, $2)', [h.pid, h.cookie]);
      await c.query('SELECT * FROM pg_background_result_v2($1, $2) AS (x pg_catalog.int4)', [h.pid, h.cookie]);
    });
    assert.deepEqual(await seen(), []);
    assert.equal(await isSuper(mallory.name), false);
  });

  test('3. a result of mallory\'s type is decoded as the reader, never with more privileges', async () => {
    await asMallory((c) => c.query(`CREATE DOMAIN mal.trap AS text CHECK (mal.pwn_check(VALUE));
      CREATE TYPE mal.box AS (v mal.trap); GRANT USAGE ON DOMAIN mal.trap TO PUBLIC; GRANT USAGE ON TYPE mal.box TO PUBLIC`));
    await asMallory(async (c) => {
      const r = await c.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT ROW(''x'')::mal.box, ARRAY[''y''::mal.trap]')) AS (b mal.box, a mal.trap[])");
      assert.equal(r.rows.length, 1);
    });
    // Decoded in mallory's own session by the invoker wrapper: her code ran as herself only.
    assert.ok((await seen()).every((who) => who === mallory.name), (await seen()).join(','));
    assert.equal(await isSuper(mallory.name), false);
    await truncateSeen();
  });

  test('4. inside mallory\'s SECURITY DEFINER function called by a superuser, the job runs as mallory', async () => {
    await asMallory((c) => c.query(`CREATE FUNCTION mal.helpful() RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$
      DECLARE who text;
      BEGIN
        SELECT x INTO who FROM pg_background_result(pg_background_launch('SELECT current_user::text')) AS (x text);
        PERFORM pg_background_detach(pg_background_launch(format('ALTER ROLE %I SUPERUSER', '${mallory.name}')));
        RETURN who;
      END $$; GRANT EXECUTE ON FUNCTION mal.helpful() TO PUBLIC`));
    assert.equal((await victim.query('SELECT mal.helpful() AS who')).rows[0].who, mallory.name);
    assert.ok(await api.engine.drain(10_000));
    assert.equal(await isSuper(mallory.name), false);
  });

  test('5. an index expression evaluated by a superuser\'s ANALYZE, REINDEX and REFRESH launches as the table owner', async () => {
    await asMallory((c) => c.query(`
      CREATE FUNCTION mal.idx(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
      BEGIN
        -- Maintenance operations run with search_path = pg_catalog, pg_temp: names are qualified.
        -- (An IMMUTABLE function may not write: the first job records the role it ran as.)
        PERFORM public.pg_background_detach(public.pg_background_launch(pg_catalog.format('INSERT INTO mal.seen (who, ctx) VALUES (current_user, %L)',
          pg_catalog.pg_backend_pid())));
        PERFORM public.pg_background_detach(public.pg_background_launch(pg_catalog.format('ALTER ROLE %I SUPERUSER', '${mallory.name}')));
        RETURN i;
      END $$;
      CREATE TABLE mal.t (i int); INSERT INTO mal.t VALUES (1), (2);
      CREATE INDEX t_idx ON mal.t (mal.idx(i));
      CREATE MATERIALIZED VIEW mal.mv AS SELECT mal.idx(i) AS i FROM mal.t;`));
    await truncateSeen();
    await victim.query('ANALYZE mal.t');
    // (A database owner may ANALYZE any table of its database; REINDEX and REFRESH take the table's owner or MAINTAIN.)
    if (!MANAGED) {
      await victim.query('REINDEX TABLE mal.t');
      await victim.query('REFRESH MATERIALIZED VIEW mal.mv');
    }
    assert.ok(await api.engine.drain(10_000));
    const who = await seen();
    assert.ok(who.length >= (MANAGED ? 1 : 3), `the maintenance operations launched jobs (${who.length})`);
    assert.ok(who.every((w) => w === mallory.name), who.join(','));
    assert.equal(await isSuper(mallory.name), false);
  });

  test('6. zero-click: autovacuum\'s ANALYZE of mallory\'s table launches as mallory', async () => {
    await truncateSeen();
    await withClient(serverUrl(), async (c) => {
      await c.query('ALTER SYSTEM SET autovacuum_naptime = 1');
      await c.query('SELECT pg_reload_conf()');
    });
    try {
      const inserter = await asMallory(async (c) => {
        await c.query(`ALTER TABLE mal.t SET (autovacuum_analyze_threshold = 1, autovacuum_analyze_scale_factor = 0);
          INSERT INTO mal.t SELECT generate_series(3, 50)`);
        return String((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
      });
      // Bounded: autovacuum visits the database about once a second now. The INSERT itself ran the
      // index expression as mallory, in her backend; only jobs launched from another backend (the
      // autovacuum worker: nothing else touches the table) count here.
      const byAutovacuum = async () => (await victim.query<{ who: string }>('SELECT who FROM mal.seen WHERE ctx <> $1', [inserter])).rows.map((r) => r.who);
      for (let i = 0; i < 300 && (await byAutovacuum()).length === 0; i++) await sleep(100);
      assert.ok(await api.engine.drain(10_000));
      const who = await byAutovacuum();
      assert.ok(who.length > 0, 'autovacuum analyzed the table and evaluated the index expression within 30 s');
      assert.ok(who.every((w) => w === mallory.name), who.join(','));
      assert.equal(await isSuper(mallory.name), false);
    } finally {
      await asMallory((c) => c.query('ALTER TABLE mal.t SET (autovacuum_enabled = false)'));
      await withClient(serverUrl(), async (c) => {
        await c.query('ALTER SYSTEM RESET autovacuum_naptime');
        await c.query('SELECT pg_reload_conf()');
      });
    }
  });

  test('7. after SET SESSION AUTHORIZATION (and SET ROLE), the job runs as the new role, whatever was used before', async (t) => {
    if (MANAGED) {
      t.skip('SET SESSION AUTHORIZATION takes a superuser, and on managed PostgreSQL nobody is one');
      return;
    }
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      const run = async () => (await c.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT current_user::text, session_user::text')) AS (u text, s text)")).rows[0];
      assert.equal((await run()).u, new URL(db.url).username);
      await c.query(`SET SESSION AUTHORIZATION ${mallory.name}`);
      assert.deepEqual(await run(), { u: mallory.name, s: mallory.name });
      await c.query(`SELECT pg_background_detach(pg_background_launch('ALTER ROLE ${mallory.name} SUPERUSER'))`);
      await c.query('RESET SESSION AUTHORIZATION');
      assert.ok(await api.engine.drain(10_000));
      assert.equal(await isSuper(mallory.name), false);
    } finally {
      await c.end();
    }
  });

  test('a NOLOGIN role taken with SET ROLE: a clear error naming it, never a fallback to the login', async () => {
    await asMallory(async (c) => {
      await c.query(`SET ROLE ${nologin}`);
      await assert.rejects(c.query("SELECT pg_background_launch('SELECT 1')"), (err: pg.DatabaseError) => {
        assert.equal(err.code, '28000');
        assert.match(err.message, new RegExp(`role "${nologin}" cannot log in`));
        return true;
      });
    });
    // A role with no pgbg secret: 42501 naming it.
    await withClient(serverUrl(), (c) => c.query(`GRANT pgbackground_role TO ${eve.name}`));
    try {
      await withClient(urlFor(db.name, eve), async (c) => {
        await assert.rejects(c.query("SELECT pg_background_launch('SELECT 1')"), { code: '42501', message: `role "${eve.name}" may not use pg_background` });
      });
    } finally {
      await withClient(serverUrl(), (c) => c.query(`REVOKE pgbackground_role FROM ${eve.name}`));
    }
  });

  test('8. no master secret: files and catalogs hold nothing that acts as another role; a connection found in a backend is useless', async () => {
    // The script CREATE EXTENSION runs, and what the database server stores, hold no secret.
    const { extensionScript } = await import('../../src/install/extension.js');
    const script = await extensionScript({ host: '127.0.0.1', port: 1 });
    assert.match(script, /pg_background_grant_privileges\(CURRENT_USER/, 'the creating role gets a secret made in the database');
    assert.equal(/[0-9a-f]{32,}|password\s*[= ]\s*'[0-9a-f]/i.exec(script)?.[0], undefined, 'no secret in the script');
    await withClient(urlFor(db.name, eve), async (c) => {
      await assert.rejects(c.query('SELECT * FROM pgbg_private.role_keys'), { code: '42501' });
      const shown = await c.query("SELECT umoptions FROM pg_user_mappings WHERE srvname = 'pgbg'");
      assert.ok(shown.rows.length > 0 && shown.rows.every((r) => r.umoptions === null), 'eve sees no one\'s secret');
    });
    const own = await asMallory(async (c) => {
      const shown = await c.query("SELECT usename, umoptions FROM pg_user_mappings WHERE srvname = 'pgbg'");
      for (const r of shown.rows) if (r.usename !== mallory.name) assert.equal(r.umoptions, null, `mallory sees ${r.usename}'s options`);
      return (await c.query("SELECT substr(o, 10) AS s FROM pg_user_mappings m, unnest(m.umoptions) o WHERE m.usename = current_user AND o LIKE 'password=%'")).rows[0].s as string;
    });
    // Her own secret does not log her in as the victim (while it does log her in as herself).
    const victimOid = (await victim.query('SELECT oid FROM pg_roles WHERE rolname = current_user')).rows[0].oid;
    await asMallory(async (c) => {
      const malloryOid = Number((await c.query('SELECT oid FROM pg_roles WHERE rolname = current_user')).rows[0].oid);
      await refusedLogin(c, Number(victimOid), own, { oid: malloryOid, password: own });
    });
    // The victim's backend holds a connection authenticated as the victim; mallory's code running in that
    // backend (her SECURITY DEFINER function, called by the victim) finds it by name and sends a request.
    await victim.query("SELECT pg_background_detach(pg_background_launch('SELECT 1'))");
    await asMallory((c) => c.query(`CREATE FUNCTION mal.hijack(secret text, port int) RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$
      DECLARE conn text; tried text := '';
      BEGIN
        FOREACH conn IN ARRAY dblink_get_connections() LOOP
          BEGIN
            -- unsigned, and signed with her own secret
            PERFORM dblink_exec(conn, '{"op":"launch","sql":"ALTER ROLE ${mallory.name} SUPERUSER"}');
          EXCEPTION WHEN OTHERS THEN tried := tried || SQLSTATE || ' ';
          END;
          BEGIN
            PERFORM dblink_exec(conn, 'pgbg1 ' || (extract(epoch from clock_timestamp()) * 1e6)::int8 || ' ' || repeat('0', 256) || E'\\n{"op":"launch","sql":"ALTER ROLE ${mallory.name} SUPERUSER"}');
          EXCEPTION WHEN OTHERS THEN tried := tried || SQLSTATE || ' ';
          END;
        END LOOP;
        RETURN tried;
      END $$; GRANT EXECUTE ON FUNCTION mal.hijack(text, int) TO PUBLIC`));
    const tried = (await victim.query('SELECT mal.hijack($1, $2) AS t', [own, api.server.port])).rows[0].t as string;
    assert.match(tried, /^(0A000 28000 )+$/, `every attempt was refused: ${tried}`);
    // A proof made with mallory's secret for the victim's connection's nonce is refused too.
    const conns = (await victim.query('SELECT dblink_get_connections() AS c')).rows[0].c as string[];
    const name = conns.find((n) => n.startsWith(`pgbg_${victimOid}_`))!;
    const nonce = name.slice(name.lastIndexOf('_') + 1);
    const forged = signRequest(own, nonce, BigInt(Date.now()) * 1000n + 999_999n, JSON.stringify({ op: 'launch', sql: `ALTER ROLE ${mallory.name} SUPERUSER` }));
    await assert.rejects(victim.query('SELECT dblink_exec($1, $2)', [name, forged]), {
      code: '28000', message: 'pgbg SQL API request refused: its proof does not match the role of this connection',
    });
    assert.ok(await api.engine.drain(10_000));
    assert.equal(await isSuper(mallory.name), false);
    // The victim's next call still works (the wrapper settles what was left on its connection).
    assert.deepEqual((await victim.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT 5')) AS (x int)")).rows, [{ x: 5 }]);
  });

  test('the grant helper shows no secret, even when asked to print its commands; granting again renews the secret', async () => {
    const notices: string[] = [];
    const onNotice = (n: { message?: string }) => notices.push(n.message ?? '');
    victim.on('notice', onNotice);
    const secretOf = () => asMallory(async (c) =>
      (await c.query("SELECT substr(o, 10) AS s FROM pg_user_mappings m, unnest(m.umoptions) o WHERE m.srvname = 'pgbg' AND m.usename = current_user AND o LIKE 'password=%'")).rows[0].s as string);
    try {
      const before = await secretOf();
      assert.equal((await victim.query('SELECT grant_pg_background_privileges($1, true) AS ok', [mallory.name])).rows[0].ok, true);
      const after = await secretOf();
      assert.notEqual(after, before, 'a new secret');
      assert.ok(notices.some((m) => m.includes('CREATE USER MAPPING')), notices.join(' | '));
      assert.ok(notices.every((m) => !m.includes(after) && !m.includes(before)), 'no notice holds a secret');
      // The old secret stops working at once: a request made with it is refused on a fresh connection.
      await asMallory(async (c) => {
        assert.deepEqual((await c.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT 3')) AS (x int)")).rows, [{ x: 3 }]);
        const oid = Number((await c.query('SELECT oid FROM pg_roles WHERE rolname = current_user')).rows[0].oid);
        await refusedLogin(c, oid, before, { oid, password: after });
      });
    } finally {
      victim.off('notice', onNotice);
    }
  });

  test('a connection mallory put in place of the victim\'s answers with her types: refused before anything is decoded', async () => {
    // Her own endpoint: it answers a result request with columns of her domain, whose CHECK would
    // run her code as whoever decodes the rows.
    const trap = (await victim.query("SELECT 'mal.trap'::regtype::oid AS oid")).rows[0].oid as number;
    const fake = await startWireServer({
      logger: testLogger(),
      authenticate: (user) => (user === 'mal' ? { password: 'fake-endpoint' } : undefined),
      handler: {
        async query() {
          return [
            { fields: ['position', 'name', 'type_oid', 'notices', 'inline', 'mac'].map((name) => ({ name, typeOid: 25 })),
              rows: [['1', 'x', String(trap), '0', 't', '0'.repeat(64)]], commandTag: 'SELECT 1' },
            { fields: [{ name: 'x', typeOid: trap }], rows: [['boom']], commandTag: 'SELECT 1' },
          ];
        },
      },
    });
    try {
      await asMallory((c) => c.query(`CREATE FUNCTION mal.swap(name text, connstr text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$
        BEGIN PERFORM dblink_disconnect(name); PERFORM dblink_connect(name, connstr); END $$; GRANT EXECUTE ON FUNCTION mal.swap(text, text) TO PUBLIC`));
      await truncateSeen();
      const h = (await victim.query("SELECT * FROM pg_background_launch_v2('SELECT ''mine''::text')")).rows[0];
      const victimOid = (await victim.query('SELECT oid FROM pg_roles WHERE rolname = current_user')).rows[0].oid;
      const conns = (await victim.query('SELECT dblink_get_connections() AS c')).rows[0].c as string[];
      const real = conns.find((n) => n.startsWith(`pgbg_${victimOid}_`))!;
      await victim.query('SELECT mal.swap($1, $2)', [real, `host=127.0.0.1 port=${fake.port} dbname=x user=mal password=fake-endpoint`]);
      await assert.rejects(victim.query('SELECT * FROM pg_background_result_v2($1, $2) AS (x text)', [h.pid, h.cookie]), {
        code: '08P01', message: /did not come from the pgbg server/,
      });
      assert.deepEqual(await seen(), [], 'mallory\'s CHECK never ran');
      assert.equal(await isSuper(mallory.name), false);
      // The fake was dropped; the next call opens a real connection, and the result is still there.
      assert.deepEqual((await victim.query('SELECT * FROM pg_background_result_v2($1, $2) AS (x text)', [h.pid, h.cookie])).rows, [{ x: 'mine' }]);
    } finally {
      await fake.close();
    }
  });

  test('access ends with plain REVOKE pgbackground_role too: a secret alone does not open the API', async () => {
    const trudy = await createLoginRole('trudy');
    await withClient(serverUrl(), (c) => c.query(`GRANT CONNECT ON DATABASE ${db.name} TO ${trudy.name}`));
    assert.equal((await victim.query('SELECT grant_pg_background_privileges($1) AS ok', [trudy.name])).rows[0].ok, true);
    api.logins.set(trudy.name, urlFor(db.name, trudy));
    try {
      await withClient(urlFor(db.name, trudy), async (c) => {
        assert.deepEqual((await c.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT 1')) AS (x int)")).rows, [{ x: 1 }]);
        // She keeps a copy of her secret, then loses access.
        const oid = Number((await c.query('SELECT oid FROM pg_roles WHERE rolname = current_user')).rows[0].oid);
        const own = (await c.query("SELECT substr(o, 10) AS s FROM pg_user_mappings m, unnest(m.umoptions) o WHERE m.usename = current_user AND o LIKE 'password=%'")).rows[0].s as string;
        // By hand, the copy logs in while she has access.
        await loginWorks(c, oid, own);
        // By whoever granted it (the installer), as REVOKE takes back one grantor's grant.
        await victim.query(`REVOKE pgbackground_role FROM ${trudy.name}`);
        await assert.rejects(c.query("SELECT pg_background_launch('SELECT 1')"), { code: '42501' });
        // By hand, with the copy: the endpoint no longer takes it.
        await refusedLogin(c, oid, own);
      });
    } finally {
      await victim.query('SELECT revoke_pg_background_privileges($1)', [trudy.name]);
      await withClient(serverUrl(), (c) => c.query(`REVOKE ALL ON DATABASE ${db.name} FROM ${trudy.name}; DROP ROLE ${trudy.name}`));
    }
  });

  test('a connection mallory planted under the victim\'s name is dropped, not used', async () => {
    await victim.query("SELECT pg_background_detach(pg_background_launch('SELECT 1'))");
    const victimOid = (await victim.query('SELECT oid FROM pg_roles WHERE rolname = current_user')).rows[0].oid;
    const conns = (await victim.query('SELECT dblink_get_connections() AS c')).rows[0].c as string[];
    const real = conns.find((n) => n.startsWith(`pgbg_${victimOid}_`))!;
    const planted = real.slice(0, real.lastIndexOf('_') + 1) + randomBytes(16).toString('hex');
    // A second connection under the victim's prefix, pointing at mallory's own login on the real PostgreSQL:
    // a request sent there would show in her pg_stat_activity.
    await asMallory((c) => c.query(`CREATE FUNCTION mal.plant(name text, connstr text) RETURNS void LANGUAGE sql SECURITY DEFINER AS $$ SELECT dblink_connect(name, connstr) $$;
      GRANT EXECUTE ON FUNCTION mal.plant(text, text) TO PUBLIC`));
    const u = new URL(serverUrl());
    await victim.query('SELECT mal.plant($1, $2)', [planted, `host=${u.hostname} port=${u.port} dbname=${db.name} user=${mallory.name} password=${mallory.password} application_name=planted`]);
    await victim.query("SELECT * FROM pg_background_result(pg_background_launch('SELECT ''a secret of the victim''')) AS (x text)");
    const after = (await victim.query('SELECT dblink_get_connections() AS c')).rows[0].c as string[];
    assert.ok(!after.includes(planted) && !after.includes(real), 'both connections under the victim\'s name were replaced');
    const leaked = await withClient(serverUrl(), (c) => c.query("SELECT query FROM pg_stat_activity WHERE application_name = 'planted' AND query LIKE '%a secret of the victim%'"));
    assert.equal(leaked.rowCount, 0);
  });
});
