/**
 * The engine's control connections (one per login, outside the pool) are
 * bounded: many distinct logins — real roles — leave at most the cap open,
 * idle ones close after the idle timeout, and engine close closes them all.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../../src/index.js';
import { createLoginRole, createTestDatabase, serverUrl, urlFor, withClient } from '../helpers/db.js';
import { sleep, testLogger } from '../helpers/engine.js';

const LOGINS = 20;

describe('control connections', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  const roles: { name: string; password: string }[] = [];

  before(async () => {
    db = await createTestDatabase();
    for (let i = 0; i < LOGINS; i++) {
      const role = await createLoginRole('pgbg_ctl');
      roles.push(role);
      await withClient(serverUrl(), (c) => c.query(`GRANT CONNECT ON DATABASE ${db.name} TO ${role.name}`));
    }
  });
  after(async () => {
    await db?.drop();
    await withClient(serverUrl(), async (c) => {
      for (const r of roles) await c.query(`DROP ROLE IF EXISTS ${r.name}`);
    });
  });

  /** Control connections of this database's test roles, as the server sees them. */
  const open = () =>
    withClient(db.url, async (c) =>
      Number((await c.query("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'pgbg control' AND datname = $1", [db.name])).rows[0].n));

  /** Bounded: until `ready` holds (at most ~5 s); whether it did. */
  const until = async (ready: () => Promise<boolean>) => {
    for (let i = 0; i < 250; i++) {
      if (await ready()) return true;
      await sleep(20);
    }
    return false;
  };

  /** Each login asks for its setting defaults once: one control connection each, unless bounded. */
  const useEveryLogin = async (engine: Engine) => {
    for (const role of roles) {
      const session = engine.session({ connection: urlFor(db.name, role) });
      assert.deepEqual(await session.changedSettings({ work_mem: '1234kB' }), { work_mem: '1234kB' });
      session.close();
    }
  };

  test(`${LOGINS} logins: at most the cap stay open, the idle ones close, and close closes the rest`, async () => {
    const engine = new Engine({ logger: testLogger(), control: { maxConnections: 5, idleTimeoutMs: 60_000 } });
    try {
      await useEveryLogin(engine);
      assert.ok(await until(async () => (await open()) <= 5), `at most 5 open (${await open()})`);
      assert.ok(engine.controlConnections <= 5);
    } finally {
      await engine.close();
    }
    assert.ok(await until(async () => (await open()) === 0), `none left after close (${await open()})`);
  });

  test('idle control connections close after the idle timeout', async () => {
    const engine = new Engine({ logger: testLogger(), control: { idleTimeoutMs: 200 } });
    try {
      await useEveryLogin(engine);
      assert.ok(await until(async () => (await open()) === 0), `all closed once idle (${await open()})`);
      assert.equal(engine.controlConnections, 0);
      // A login used again gets a new one.
      await useEveryLogin(engine);
      assert.ok((await open()) > 0);
    } finally {
      await engine.close();
    }
    assert.ok(await until(async () => (await open()) === 0), `none left after close (${await open()})`);
  });
});
