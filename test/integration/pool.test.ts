/**
 * The worker pool against a real PostgreSQL: warm reuse, state isolation between
 * jobs on a reused connection, pid reuse never cross-wiring stale handles, the
 * job-count cap, and exhaustion (our caps and the server's connection limits).
 *
 * Jobs that must hold a connection "long enough" wait on an advisory lock held
 * by a separate gate client, so nothing here depends on timing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createLoginRole, createTestDatabase, serverUrl, urlFor, withClient } from '../helpers/db.js';
import { openFixture, sleep, testLogger, type Fixture } from '../helpers/engine.js';
import { makeLogin } from '../../src/workers/pool.js';
import { Engine, type Handle, type PgbgError, type Session } from '../../src/index.js';

type TestDb = Awaited<ReturnType<typeof createTestDatabase>>;

/** Launches `sql`, reads its whole result, and returns the handle and rows. */
async function run<R = Record<string, unknown>>(session: Session, sql: string): Promise<{ h: Handle; rows: R[] }> {
  const h = await session.launch(sql);
  const r = await session.result<R>(h);
  return { h, rows: r.rows };
}

/** Polls (bounded) until `cond` holds; fails the test otherwise. */
async function until(cond: () => boolean, what: string, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (cond()) return;
    await sleep(25);
  }
  assert.fail(`gave up waiting for: ${what}`);
}

/** An assert.rejects predicate for the pool's "no capacity" error. */
function noCapacity(hint: RegExp) {
  return (err: unknown): boolean => {
    const e = err as PgbgError;
    assert.equal(e.code, '53000', `unexpected error: ${e.message}`);
    assert.equal(e.message, 'could not start background worker');
    assert.match(e.hint ?? '', hint);
    return true;
  };
}

/** A client holding an advisory lock; jobs that take the same lock wait until it opens. */
class Gate {
  static readonly KEY = 7_301_001;
  #client: pg.Client | undefined;
  /** SQL that blocks until the gate opens, then returns one row {one: 1}. */
  static readonly waitSql = `SELECT 1 AS one FROM (SELECT pg_advisory_xact_lock(${Gate.KEY})) s`;

  async hold(url: string): Promise<void> {
    if (this.#client) return;
    this.#client = new pg.Client({ connectionString: url });
    await this.#client.connect();
    await this.#client.query(`SELECT pg_advisory_lock(${Gate.KEY})`);
  }

  async release(): Promise<void> {
    const c = this.#client;
    this.#client = undefined;
    if (c) await c.end();
  }
}

/** mulberry32: a small seeded PRNG, so the interleaving is the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('pool: warm reuse', () => {
  let db: TestDb;
  let fx: Fixture | undefined;
  before(async () => {
    db = await createTestDatabase();
    fx = await openFixture(db.url);
  });
  after(async () => {
    await fx?.close();
    await db.drop();
  });

  test('a login that must be a given role (by OID) refuses a connection whose session user is another role', async () => {
    const engine = new Engine({ logger: testLogger() });
    try {
      const oid = Number((await withClient(db.url, (c) => c.query('SELECT oid FROM pg_roles WHERE rolname = current_user'))).rows[0].oid);
      const session = engine.session({ connection: db.url });
      const right = makeLogin(db.url, { roleOid: oid });
      const h = await session.launch('SELECT 1', { login: right });
      assert.deepEqual((await session.result(h)).rows, [{ '?column?': 1 }]);
      // As if the role had been renamed and its old name given to another role: the login's name now reaches someone else.
      const wrong = makeLogin(db.url, { roleOid: oid + 1 });
      await assert.rejects(session.launch('SELECT 1', { login: wrong }), { code: '28000', message: /no longer the role it was granted to/ });
    } finally {
      await engine.close();
    }
  });

  test('sequential launch+result cycles in one session reuse one connection', async () => {
    const { session, engine } = fx!;
    const pids = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const { h, rows } = await run<{ pid: number; i: number }>(session, `SELECT pg_backend_pid() AS pid, ${i} AS i`);
      assert.deepEqual(rows, [{ pid: h.pid, i }]);
      assert.equal(engine.pool.size, 1, `after cycle ${i} the pool holds ${engine.pool.size} connections`);
      pids.add(h.pid);
    }
    // The handle of a read result is gone, so the next job may (and does) reuse its backend.
    assert.equal(pids.size, 1);
  });
});

describe('pool: idle timeout', () => {
  let db: TestDb;
  let fx: Fixture | undefined;
  before(async () => {
    db = await createTestDatabase();
    fx = await openFixture(db.url, { pool: { idleTimeoutMs: 300 } });
  });
  after(async () => {
    await fx?.close();
    await db.drop();
  });

  test('an idle connection is closed after idleTimeoutMs, and its backend exits', async () => {
    const { h } = await run(fx!.session, 'SELECT 1 AS one');
    assert.equal(fx!.engine.pool.size, 1);
    // The sweeper runs every second at the most: bounded wait.
    await until(() => fx!.engine.pool.size === 0, 'the idle connection closed');
    const gone = async () => (await fx!.launcher.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [h.pid])).rowCount === 0;
    for (let i = 0; i < 100 && !(await gone()); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(await gone(), `backend ${h.pid} exited`);
    // The next launch opens a fresh connection.
    const next = await run<{ one: number }>(fx!.session, 'SELECT 1 AS one');
    assert.deepEqual(next.rows, [{ one: 1 }]);
  });
});

describe('pool: state does not leak between jobs on a reused connection', () => {
  let db: TestDb;
  let fx: Fixture | undefined;
  let role: { name: string; password: string } | undefined;
  let loginUser = '';
  before(async () => {
    db = await createTestDatabase();
    // One connection per login: the second job must run on the first one's backend.
    fx = await openFixture(db.url, { pool: { maxConnectionsPerLogin: 1 } });
    loginUser = (await fx.launcher.query<{ u: string }>('SELECT current_user AS u')).rows[0]!.u;
    role = await createLoginRole('pgbg_iso');
    await fx.launcher.query(`GRANT ${role.name} TO ${loginUser}`);
    await fx.launcher.query('CREATE SEQUENCE iso_seq');
  });
  after(async () => {
    await fx?.close();
    await db.drop();
    if (role) await withClient(serverUrl(), (c) => c.query(`DROP ROLE IF EXISTS ${role!.name}`));
  });

  /** Runs job 1 then job 2 (each read before the next) and checks they shared a backend. */
  async function twoJobs<R1, R2>(sql1: string, sql2: string): Promise<{ first: R1[]; second: R2[] }> {
    const { session } = fx!;
    const a = await run<R1>(session, sql1);
    const b = await run<R2>(session, sql2);
    assert.equal(b.h.pid, a.h.pid, 'the second job must reuse the first job\'s backend');
    return { first: a.rows, second: b.rows };
  }

  test('a temp table from job 1 is gone in job 2', async () => {
    const r = await twoJobs<{ n: number }, { gone: boolean }>(
      'CREATE TEMP TABLE iso_tmp (x int); INSERT INTO iso_tmp VALUES (1); SELECT count(*)::int AS n FROM iso_tmp',
      "SELECT to_regclass('iso_tmp') IS NULL AS gone",
    );
    assert.deepEqual(r.first, [{ n: 1 }]);
    assert.deepEqual(r.second, [{ gone: true }]);
  });

  test('SET and set_config from job 1 are reset in job 2', async () => {
    const r = await twoJobs<{ wm: string; x: string | null }, { wm: string; x: string | null }>(
      "SET work_mem = '7777kB'; SELECT current_setting('work_mem') AS wm, set_config('myapp.x', 'leaked', false) AS x",
      "SELECT current_setting('work_mem') AS wm, current_setting('myapp.x', true) AS x",
    );
    assert.deepEqual(r.first, [{ wm: '7777kB', x: 'leaked' }]);
    assert.notEqual(r.second[0]?.wm, '7777kB');
    // RESET ALL leaves a known placeholder defined but empty.
    assert.ok(r.second[0]?.x === null || r.second[0]?.x === '', `myapp.x leaked: ${String(r.second[0]?.x)}`);
  });

  test('a prepared statement from job 1 does not exist in job 2', async () => {
    const q = "SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = 'iso_stmt'";
    const r = await twoJobs<{ n: number }, { n: number }>(`PREPARE iso_stmt AS SELECT 1; ${q}`, q);
    assert.deepEqual(r.first, [{ n: 1 }]);
    assert.deepEqual(r.second, [{ n: 0 }]);
  });

  test('a session advisory lock from job 1 is not held in job 2', async () => {
    const q = "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()";
    const r = await twoJobs<{ n: number }, { n: number }>(`SELECT pg_advisory_lock(4242); ${q}`, q);
    assert.deepEqual(r.first, [{ n: 1 }]);
    assert.deepEqual(r.second, [{ n: 0 }]);
    // And anyone else can take it.
    const got = await fx!.launcher.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(4242) AS ok');
    assert.equal(got.rows[0]?.ok, true);
    await fx!.launcher.query('SELECT pg_advisory_unlock(4242)');
  });

  test('a session advisory lock taken by a job that then fails is not held by the next job', async () => {
    // Session-level advisory locks survive the rollback of the failed job's transaction.
    const h1 = await fx!.session.launch('SELECT pg_advisory_lock(4243); SELECT 1/0');
    await assert.rejects(fx!.session.result(h1), { code: '22012' });
    const { h, rows } = await run<{ n: number }>(
      fx!.session,
      "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
    );
    assert.equal(h.pid, h1.pid);
    assert.deepEqual(rows, [{ n: 0 }]);
  });

  test('LISTEN from job 1 is not active in job 2', async () => {
    // LISTEN takes effect when its transaction commits, so job 1 cannot see its own
    // channel; a plain connection shows that the check sees a committed LISTEN.
    const q = "SELECT count(*)::int AS n FROM pg_listening_channels() c WHERE c = 'iso_chan'";
    await withClient(db.url, async (c) => {
      await c.query('LISTEN iso_chan');
      assert.deepEqual((await c.query(q)).rows, [{ n: 1 }]);
    });
    const r = await twoJobs<{ command: string }, { n: number }>('LISTEN iso_chan', q);
    assert.deepEqual(r.first, [{ command: 'LISTEN' }]);
    assert.deepEqual(r.second, [{ n: 0 }]);
  });

  test('SET ROLE in job 1 does not leak: job 2 runs as the login user', async () => {
    const r = await twoJobs<{ u: string }, { u: string; s: string }>(
      `SET ROLE ${role!.name}; SELECT current_user AS u`,
      'SELECT current_user AS u, session_user AS s',
    );
    assert.deepEqual(r.first, [{ u: role!.name }]);
    assert.deepEqual(r.second, [{ u: loginUser, s: loginUser }]);
  });

  test('a WITH HOLD cursor from job 1 is closed in job 2', async () => {
    const q = "SELECT count(*)::int AS n FROM pg_cursors WHERE name = 'iso_cur'";
    const r = await twoJobs<{ n: number }, { n: number }>(`DECLARE iso_cur CURSOR WITH HOLD FOR SELECT 1; ${q}`, q);
    assert.deepEqual(r.first, [{ n: 1 }]);
    assert.deepEqual(r.second, [{ n: 0 }]);
  });

  test('sequence state (currval) from job 1 is gone in job 2', async () => {
    const a = await run<{ v: string }>(fx!.session, "SELECT nextval('iso_seq')::text AS v");
    assert.deepEqual(a.rows, [{ v: '1' }]);
    const h = await fx!.session.launch("SELECT currval('iso_seq')");
    assert.equal(h.pid, a.h.pid);
    await assert.rejects(fx!.session.result(h), { code: '55000', message: /currval of sequence "iso_seq" is not yet defined/ });
  });
});

describe('pool: pid reuse never cross-wires a stale handle', () => {
  let db: TestDb;
  let fx: Fixture | undefined;
  before(async () => {
    db = await createTestDatabase();
    fx = await openFixture(db.url, { pool: { maxConnectionsPerLogin: 2 } });
  });
  after(async () => {
    await fx?.close();
    await db.drop();
  });

  test('two live handles in one session never share a pid', async () => {
    const { session } = fx!;
    const a = await session.launch('SELECT pg_sleep(0.2), pg_backend_pid() AS pid');
    const b = await session.launch('SELECT pg_sleep(0.2), pg_backend_pid() AS pid');
    assert.notEqual(a.pid, b.pid);
    const ra = await session.result<{ pid: number }>(a);
    const rb = await session.result<{ pid: number }>(b);
    assert.equal(ra.rows[0]?.pid, a.pid);
    assert.equal(rb.rows[0]?.pid, b.pid);
  });

  test('~300 sequential jobs: stale handles whose pid is live again are refused, never given the live rows', async () => {
    const { session, engine } = fx!;
    const random = prng(0x5eed_2025);
    const TOTAL = 300;
    interface Tracked {
      h: Handle;
      seq: number;
    }
    const live: Tracked[] = [];
    const stale: Tracked[] = [];
    let launched = 0;
    let collisions = 0;
    let otherStale = 0;

    const probeStale = async () => {
      const livePids = new Set(live.map((t) => t.h.pid));
      for (const old of stale) {
        const colliding = livePids.has(old.h.pid);
        if (colliding) collisions++;
        else otherStale++;
        await assert.rejects(session.result(old.h), (err: unknown) => {
          const code = (err as PgbgError).code;
          assert.ok(code === '55000' || code === '42704', `stale handle ${old.h.pid}/${old.h.cookie} gave ${code}: ${(err as Error).message}`);
          // A live pid with another cookie is a cookie mismatch.
          if (colliding) assert.equal(code, '55000');
          return true;
        });
      }
    };

    for (let step = 0; step < 10 * TOTAL && (launched < TOTAL || live.length > 0); step++) {
      const mayLaunch = launched < TOTAL && live.length < 2;
      if (mayLaunch && (live.length === 0 || random() < 0.5)) {
        const seq = launched++;
        const h = await session.launch(`SELECT ${seq} AS seq, pg_backend_pid() AS pid`);
        for (const t of live) assert.notEqual(t.h.pid, h.pid, 'two live handles share a pid');
        live.push({ h, seq });
        continue;
      }
      await probeStale();
      const [t] = live.splice(Math.floor(random() * live.length), 1);
      const r = await session.result<{ seq: number; pid: number }>(t!.h);
      assert.deepEqual(r.rows, [{ seq: t!.seq, pid: t!.h.pid }], 'a handle got another job\'s rows');
      stale.push(t!);
    }
    assert.equal(launched, TOTAL);
    assert.equal(live.length, 0);
    assert.equal(stale.length, TOTAL);
    await probeStale();
    assert.ok(engine.pool.size <= 2);
    console.log(`pid reuse: ${collisions} stale-handle probes on a live pid, ${otherStale} on a non-live pid`);
    assert.ok(collisions > 0, 'pid reuse never happened, so nothing was tested');
  });

  test('a session whose unread handles sit on every idle connection can still launch', async () => {
    // Found by this test: the per-login cap counted idle connections this session
    // must not reuse (their pids belong to its unread handles), so the launch
    // failed "all connections busy" while every connection was idle.
    const engine2 = await openFixture(db.url, { pool: { maxConnectionsPerLogin: 2, whenExhausted: 'fail' } });
    try {
      const { session, engine } = engine2;
      const a = await session.launch('SELECT 1 AS n');
      const b = await session.launch('SELECT 2 AS n');
      await session.wait(a);
      await session.wait(b);
      await until(() => engine.pool.idleCount === 2, 'both connections back in the pool');
      const c = await session.launch('SELECT 3 AS n, pg_backend_pid() AS pid');
      assert.notEqual(c.pid, a.pid);
      assert.notEqual(c.pid, b.pid);
      assert.ok(engine.pool.size <= 2, `pool holds ${engine.pool.size} connections`);
      assert.deepEqual((await session.result(a)).rows, [{ n: 1 }]);
      assert.deepEqual((await session.result(b)).rows, [{ n: 2 }]);
      assert.deepEqual((await session.result(c)).rows, [{ n: 3, pid: c.pid }]);
    } finally {
      await engine2.close();
    }
  });
});

describe('pool: job-count cap', () => {
  let db: TestDb;
  let fx: Fixture | undefined;
  before(async () => {
    db = await createTestDatabase();
    fx = await openFixture(db.url, { pool: { maxJobsPerConnection: 3, maxConnectionsPerLogin: 1 } });
  });
  after(async () => {
    await fx?.close();
    await db.drop();
  });

  test('a connection retires after maxJobsPerConnection jobs', async () => {
    const pids: number[] = [];
    for (let i = 0; i < 7; i++) {
      const { h, rows } = await run<{ pid: number }>(fx!.session, 'SELECT pg_backend_pid() AS pid');
      assert.deepEqual(rows, [{ pid: h.pid }]);
      pids.push(h.pid);
    }
    const [a, b, c] = [pids[0]!, pids[3]!, pids[6]!];
    assert.deepEqual(pids, [a, a, a, b, b, b, c]);
    assert.equal(new Set([a, b, c]).size, 3);
    assert.ok(fx!.engine.pool.size <= 1);
  });
});

describe('pool: exhaustion', () => {
  let db: TestDb;
  const fixtures: Fixture[] = [];
  const gates: Gate[] = [];
  const roles: string[] = [];
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    for (const g of gates) await g.release();
    for (const f of fixtures) await f.close();
    await db.drop();
    for (const r of roles) await withClient(serverUrl(), (c) => c.query(`DROP ROLE IF EXISTS ${r}`));
  });

  async function fixture(pool: NonNullable<Parameters<typeof openFixture>[1]>['pool']): Promise<Fixture> {
    const f = await openFixture(db.url, { pool });
    fixtures.push(f);
    return f;
  }
  function gate(): Gate {
    const g = new Gate();
    gates.push(g);
    return g;
  }

  /** With one worker per login held by a running job, a second launch is refused (53000) while the first job keeps running. */
  async function secondLaunchRefused(pool: Parameters<typeof fixture>[0]): Promise<void> {
    const fx = await fixture(pool);
    const g = gate();
    await g.hold(db.url);
    const h1 = await fx.session.launch(Gate.waitSql);
    const other = fx.engine.session({ connection: db.url });
    await assert.rejects(other.launch('SELECT 1'), noCapacity(/maxConnectionsPerLogin/));
    // Not by timing: the job it would have had to wait for is still running.
    assert.equal(fx.session.trackedJob(h1).job.ended, false);
    // Its SQL goes out just after the launch answers; then it runs, held by the gate.
    await until(() => fx.session.list().find((j) => j.pid === h1.pid)?.state === 'running', 'the first job running');
    await g.release();
    assert.deepEqual((await fx.session.result(h1)).rows, [{ one: 1 }]);
    other.close();
  }

  test("'queue' with a short acquireTimeoutMs: 53000 naming maxConnectionsPerLogin", () =>
    secondLaunchRefused({ maxConnectionsPerLogin: 1, acquireTimeoutMs: 500, whenExhausted: 'queue' }));

  test("'fail': the second launch fails at once, while the first job still runs", () =>
    secondLaunchRefused({ maxConnectionsPerLogin: 1, acquireTimeoutMs: 30_000, whenExhausted: 'fail' }));

  test("'queue' with a long acquireTimeoutMs: the second launch starts once the first job ends", async () => {
    const fx = await fixture({ maxConnectionsPerLogin: 1, acquireTimeoutMs: 60_000, whenExhausted: 'queue' });
    const g = gate();
    await g.hold(db.url);
    const h1 = await fx.session.launch(Gate.waitSql);
    const other = fx.engine.session({ connection: db.url });
    let settled = false;
    const p2 = other.launch('SELECT 2 AS two, pg_backend_pid() AS pid').finally(() => {
      settled = true;
    });
    // Waiting for a worker: listed as starting with no pid yet (not a time window).
    await until(() => other.list().some((j) => j.state === 'starting' && j.pid === 0), 'the second launch waiting for a worker');
    assert.equal(settled, false, 'the second launch got a connection while the only one was busy');
    await g.release();
    const h2 = await p2;
    // It could only have the connection after the first job ended (and released it).
    assert.equal(fx.session.trackedJob(h1).job.ended, true);
    assert.equal(h2.pid, h1.pid);
    assert.deepEqual((await other.result(h2)).rows, [{ two: 2, pid: h1.pid }]);
    assert.deepEqual((await fx.session.result(h1)).rows, [{ one: 1 }]);
    other.close();
  });

  test("a launch waiting for a worker is listed as 'starting' (pid 0); it is 'running' once its SQL is sent", async () => {
    const fx = await fixture({ maxConnections: 1, acquireTimeoutMs: 60_000, whenExhausted: 'queue' });
    const g = gate();
    await g.hold(db.url);
    const h1 = await fx.session.launch(Gate.waitSql);
    // Right after the launch answers, the SQL is not yet written (it goes out in the next turn of the event loop).
    assert.equal(fx.session.list().find((j) => j.pid === h1.pid)?.state, 'starting');
    await until(() => fx.session.list().find((j) => j.pid === h1.pid)?.state === 'running', 'the first job running');
    const p2 = fx.session.launch("SELECT 'second' AS s");
    await until(() => fx.session.list().length === 2, 'the second launch listed');
    const waiting = fx.session.list().find((j) => j.pid !== h1.pid);
    assert.equal(waiting?.state, 'starting');
    assert.equal(waiting?.pid, 0);
    assert.equal(waiting?.sqlPreview, "SELECT 'second' AS s");
    await g.release();
    assert.deepEqual((await fx.session.result(h1)).rows, [{ one: 1 }]);
    const h2 = await p2;
    assert.deepEqual((await fx.session.result(h2)).rows, [{ s: 'second' }]);
    assert.equal(fx.session.list().length, 0);
  });

  test("the server refusing connections (the role's CONNECTION LIMIT): 53000 naming max_connections", async () => {
    const role = await createLoginRole('pgbg_lim');
    roles.push(role.name);
    await withClient(serverUrl(), (c) => c.query(`ALTER ROLE ${role.name} CONNECTION LIMIT 1`));
    const roleUrl = urlFor(db.name, role);
    const backendsOfRole = () =>
      withClient(db.url, async (c) =>
        Number((await c.query('SELECT count(*) AS n FROM pg_stat_activity WHERE usename = $1', [role.name])).rows[0].n));
    for (const whenExhausted of ['fail', 'queue'] as const) {
      const fx = await fixture({ whenExhausted, acquireTimeoutMs: 500 });
      const g = gate();
      await g.hold(db.url);
      const first = fx.engine.session({ connection: roleUrl });
      const second = fx.engine.session({ connection: roleUrl });
      const h1 = await first.launch(Gate.waitSql);
      await assert.rejects(second.launch('SELECT 1'), (err: unknown) => {
        noCapacity(/max_connections/)(err);
        assert.match((err as PgbgError).hint ?? '', /CONNECTION LIMIT/);
        assert.match((err as PgbgError).detail ?? '', /too many connections for role/);
        return true;
      });
      assert.equal(first.trackedJob(h1).job.ended, false, whenExhausted);
      await g.release();
      assert.deepEqual((await first.result(h1)).rows, [{ one: 1 }]);
      // The role's one connection is reset and back in the pool: the other session gets it
      // (no new connection, which the server would refuse), even in 'fail' mode.
      const { h, rows } = await run<{ u: string }>(second, 'SELECT current_user AS u');
      assert.equal(h.pid, h1.pid);
      assert.deepEqual(rows, [{ u: role.name }]);
      assert.equal(fx.engine.pool.size, 1);
      await fx.close();
      fixtures.splice(fixtures.indexOf(fx), 1);
      // The next round needs the role's one slot: wait (bounded) until the backend has gone.
      let left = await backendsOfRole();
      for (let i = 0; i < 200 && left > 0; i++) {
        await sleep(25);
        left = await backendsOfRole();
      }
      assert.equal(left, 0, `backends of ${role.name} still connected`);
    }
  });
});

describe("pool: one login's share", () => {
  let db: TestDb;
  let fx: Fixture | undefined;
  let other: { name: string; password: string };
  const gate = new Gate();
  before(async () => {
    db = await createTestDatabase();
    other = await createLoginRole('pgbg_share');
    fx = await openFixture(db.url, { pool: { maxConnections: 8, whenExhausted: 'fail' } });
  });
  after(async () => {
    await gate.release();
    await fx?.close();
    await db.drop();
    await withClient(serverUrl(), (c) => c.query(`DROP ROLE IF EXISTS ${other.name}`));
  });

  test('by default a login gets a quarter of maxConnections; another login still gets a worker', async () => {
    await gate.hold(db.url);
    const held = [await fx!.session.launch(Gate.waitSql), await fx!.session.launch(Gate.waitSql)];
    const same = fx!.engine.session({ connection: db.url });
    await assert.rejects(same.launch('SELECT 1'), noCapacity(/All 2 worker connections for \S+ are busy \(maxConnectionsPerLogin\)/));
    same.close();
    for (const h of held) assert.equal(fx!.session.trackedJob(h).job.ended, false, 'its jobs still hold their workers');
    const b = fx!.engine.session({ connection: urlFor(db.name, other) });
    const { rows } = await run<{ u: string }>(b, 'SELECT current_user AS u');
    assert.deepEqual(rows, [{ u: other.name }]);
    b.close();
    assert.equal(fx!.engine.pool.options.maxConnectionsPerLogin, 2);
    await gate.release();
    for (const h of held) assert.deepEqual((await fx!.session.result(h)).rows, [{ one: 1 }]);
  });

  test('given, maxConnectionsPerLogin wins; the share of the default 128 is 32', async () => {
    const engine = new Engine({ pool: { maxConnectionsPerLogin: 5 } });
    const defaults = new Engine();
    try {
      assert.equal(engine.pool.options.maxConnectionsPerLogin, 5);
      assert.equal(defaults.pool.options.maxConnections, 128);
      assert.equal(defaults.pool.options.maxConnectionsPerLogin, 32);
      assert.equal(new Engine({ pool: { maxConnections: 2 } }).pool.options.maxConnectionsPerLogin, 1);
    } finally {
      await engine.close();
      await defaults.close();
    }
  });
});
