/**
 * The command line against an existing PostgreSQL, as a user runs it:
 * `pgbg install` (relocatable schema, re-run no-op, upgrade, wrong schema),
 * `pgbg serve --database URL --pgpass FILE`, and `pgbg uninstall`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { legacyInstall } from '../helpers/legacy-install.js';
import { createLoginRole, createTestDatabase, serverUrl, urlFor, withClient } from '../helpers/db.js';
import { until, untilGone } from '../helpers/activity.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

interface Serving {
  output: string;
  /** What the server logged (its stderr: pino JSON lines). */
  log: string;
  stop(signal: NodeJS.Signals): Promise<{ code: number | null; output: string }>;
}

/** Every server a test started and that has not exited yet: killed after the file, whatever happened. */
const children = new Set<ChildProcess>();

async function startServe(args: string[]): Promise<Serving> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let log = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    log += d.toString();
    process.stderr.write(d);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    children.delete(child);
    resolve(code);
  }));
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no ready line: ${out}`)), 60_000);
      const check = () => {
        if (/^ready: /m.test(out)) resolve();
      };
      child.stdout.on('data', check);
      void exited.then((code) => reject(new Error(`exited with ${code}: ${out}`)));
    });
  } catch (err) {
    // A server that missed its ready line is not left running.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return {
    get output() {
      return out;
    },
    get log() {
      return log;
    },
    async stop(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const code = await exited;
      return { code, output: out };
    },
  };
}

function pgbg(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('pgbg install / serve --database / uninstall', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let data: string;

  before(async () => {
    db = await createTestDatabase();
    data = await mkdtemp(path.join(os.tmpdir(), 'pgbg-cli-'));
  });
  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await db?.drop();
    await rm(data, { recursive: true, force: true });
  });

  test('install into a schema of its own; a re-run is a no-op; another schema is refused', async () => {
    // 1.8, as the serve test below uses it; 2.0 (the default) has its own suite.
    const first = pgbg('install', '--database', db.url, '--schema', 'bg', '--data', data, '--api-version', '1.8');
    assert.equal(first.code, 0, first.stderr);
    assert.ok(first.stdout.includes('installed the SQL API in schema bg (pg_background 1.8); it reaches the server at 127.0.0.1:'), first.stdout);
    const again = pgbg('install', '--database', db.url, '--schema', 'bg', '--data', data);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /was up to date/);
    const other = pgbg('install', '--database', db.url, '--data', data);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /already installed in schema "bg".*SQLSTATE 22023/);
  });

  test('serve --database --pgpass: the API in schema bg runs jobs as the caller; a role without credentials is refused by name', async () => {
    const login = new URL(db.url);
    const pgpass = path.join(data, 'pgpass');
    await writeFile(pgpass, `${login.hostname}:${login.port}:*:${decodeURIComponent(login.username)}:${decodeURIComponent(login.password)}\n`, { mode: 0o600 });
    const serve = () => startServe(['--database', db.url, '--pgpass', pgpass, '--data', data, '--log-level', 'warn']);
    let running = await serve();
    const outsider = await createLoginRole('pgbg_nocred');
    const longLived = new pg.Client({ connectionString: db.url });
    await longLived.connect();
    try {
      await withClient(db.url, async (c) => {
        assert.equal((await c.query('SHOW pg_background.max_workers')).rows[0]['pg_background.max_workers'], '16');
        assert.equal((await c.query("SELECT to_regproc('public.pg_background_launch') AS f")).rows[0].f, null, 'nothing in public');
        const r = await c.query("SELECT * FROM bg.pg_background_result(bg.pg_background_launch('SELECT current_user::text, 42')) AS (u text, x int)");
        assert.deepEqual(r.rows, [{ u: decodeURIComponent(login.username), x: 42 }]);
        // The journal is written behind the jobs (group commit every 10 ms; a job may first be
        // written 'running', then updated): poll until its final record, bounded.
        let j = await c.query("SELECT state FROM pgbg_server.jobs WHERE sql_preview LIKE 'SELECT current_user%'");
        for (let i = 0; i < 250 && (j.rows.length === 0 || j.rows[0].state === 'running'); i++) {
          await new Promise((r) => setTimeout(r, 20));
          j = await c.query("SELECT state FROM pgbg_server.jobs WHERE sql_preview LIKE 'SELECT current_user%'");
        }
        assert.deepEqual(j.rows, [{ state: 'stopped' }]);
      });
      await withClient(serverUrl(), (c) => c.query(`GRANT CONNECT ON DATABASE ${db.name} TO ${outsider.name}`));
      await withClient(db.url, (c) => c.query(`GRANT USAGE ON SCHEMA bg TO ${outsider.name}; SELECT bg.grant_pg_background_privileges('${outsider.name}')`));
      await withClient(urlFor(db.name, outsider), async (c) => {
        await assert.rejects(c.query("SELECT bg.pg_background_launch('SELECT 1')"), (err: pg.DatabaseError) => {
          assert.equal(err.code, '28000');
          assert.match(err.message, new RegExp(outsider.name));
          return true;
        });
      });
      const launch42 = "SELECT * FROM bg.pg_background_result(bg.pg_background_launch('SELECT 42')) AS (x int)";
      assert.deepEqual((await longLived.query(launch42)).rows, [{ x: 42 }]);
      const stopped = await running.stop('SIGTERM');
      assert.equal(stopped.code, 0);
      assert.match(stopped.output, /^stopped: 0 running job\(s\) finished, 0 canceled at the deadline$/m);
      // A pooled caller backend outlives the server: after a restart its next call reconnects.
      running = await serve();
      assert.deepEqual((await longLived.query(launch42)).rows, [{ x: 42 }]);
    } finally {
      await longLived.end();
      await running.stop('SIGKILL');
      await withClient(db.url, (c) => c.query(`REVOKE ALL ON SCHEMA bg FROM ${outsider.name}; SELECT bg.revoke_pg_background_privileges('${outsider.name}')`));
      await withClient(serverUrl(), async (c) => {
        await c.query(`REVOKE ALL ON DATABASE ${db.name} FROM ${outsider.name}`);
        await c.query(`DROP ROLE ${outsider.name}`);
      });
    }
  });

  test('a server killed with a job running: the next start reports the job lost, on stdout and in its log', async () => {
    // A database and data folder of its own, so that only this test's jobs are in its journal.
    const own = await createTestDatabase();
    const folder = await mkdtemp(path.join(os.tmpdir(), 'pgbg-cli-lost-'));
    let running: Serving | undefined;
    let worker: number | undefined;
    try {
      const login = new URL(own.url);
      const pgpass = path.join(folder, 'pgpass');
      await writeFile(pgpass, `${login.hostname}:${login.port}:*:${decodeURIComponent(login.username)}:${decodeURIComponent(login.password)}\n`, { mode: 0o600 });
      const installed = pgbg('install', '--database', own.url, '--data', folder);
      assert.equal(installed.code, 0, installed.stderr);
      const serve = () => startServe(['--database', own.url, '--pgpass', pgpass, '--data', folder, '--log-level', 'warn']);
      running = await serve();
      const job = await withClient(own.url, async (c) => {
        const h = (await c.query("SELECT (h).pid FROM (SELECT pg_background_launch('SELECT pg_sleep(30)') AS h OFFSET 0) s")).rows[0];
        worker = h.pid as number;
        // On record as running (the journal writes behind the jobs), with its run's journal backend.
        const q = 'SELECT j.run_id, r.pid AS journal FROM pgbg_server.jobs j JOIN pgbg_server.runs r USING (run_id) WHERE j.pid = $1 AND j.state = $2';
        await until(async () => ((await c.query(q, [worker, 'running'])).rowCount ?? 0) > 0, 'the job is in the journal as running');
        return (await c.query(q, [worker, 'running'])).rows[0] as { run_id: string; journal: number };
      });
      const killed = await running.stop('SIGKILL');
      assert.equal(killed.code, null);
      // Its journal connection ends with it, and with it the lock that says the run is alive.
      await untilGone(own.url, job.journal);
      running = await serve();
      const restarted = running;
      // Printed right behind the ready line (bounded wait).
      await until(() => /were lost/.test(restarted.output), `the restarted server reports lost jobs; it printed: ${restarted.output}`);
      assert.match(running.output, /^ {2}1 job\(s\) of an earlier run were lost \(the server stopped before they ended\): see pgbg_server\.jobs WHERE state = 'lost'$/m);
      const lost = running.log.split('\n').filter((l) => l.includes('"msg":"job lost:')).map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.deepEqual(lost.map((l) => [l.level, l.msg, l.pid, l.run, l.database, l.role]), [
        [40, 'job lost: an earlier run of the server stopped before it ended', worker, job.run_id, own.name, decodeURIComponent(login.username)],
      ]);
      assert.ok(!running.log.includes('pg_sleep'), 'no SQL text in the log');
      await withClient(own.url, async (c) => {
        assert.deepEqual((await c.query('SELECT state FROM pgbg_server.jobs WHERE pid = $1', [worker])).rows, [{ state: 'lost' }]);
      });
    } finally {
      await running?.stop('SIGKILL');
      // The killed server's worker backend sleeps on: nobody is left to end it.
      if (worker !== undefined) await withClient(own.url, (c) => c.query('SELECT pg_terminate_backend($1)', [worker]));
      await own.drop();
      await rm(folder, { recursive: true, force: true });
    }
  });

  test('serve refuses a pool, memory or size option out of range, naming it', () => {
    for (const [option, value] of [
      ['--idle-timeout-ms', '0'], ['--max-connections', '-1'], ['--release-memory-ms', '-5'], ['--max-connections-per-login', '0'], ['--max-workers', '-1'],
      ['--max-request-bytes', 'lots'], ['--max-queue-bytes-per-login', '2 TB'],
    ] as const) {
      const r = pgbg('serve', '--embedded', option, value);
      assert.equal(r.code, 1, r.stderr);
      assert.ok(r.stderr.includes(`option '${option} <`) && r.stderr.includes(`'${value}' is invalid`), r.stderr);
    }
  });

  test('serve without credentials or a database says what to give', () => {
    const none = pgbg('serve', '--database', db.url, '--data', data);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no credentials for worker logins: give --pgpass FILE, --passwords FILE or --trust-socket DIR/);
    const nothing = pgbg('serve', '--data', data);
    assert.equal(nothing.code, 1);
    assert.match(nothing.stderr, /give --database URL/);
  });

  test('serve refuses a journal option out of range, naming it', () => {
    const days = pgbg('serve', '--embedded', '--journal-retention-days', '-1');
    assert.equal(days.code, 1, days.stderr);
    assert.ok(days.stderr.includes("option '--journal-retention-days <n>' argument '-1' is invalid"), days.stderr);
    const sql = pgbg('serve', '--embedded', '--journal-sql', 'all');
    assert.equal(sql.code, 1, sql.stderr);
    assert.ok(sql.stderr.includes("option '--journal-sql <mode>' argument 'all' is invalid") && sql.stderr.includes('preview, none'), sql.stderr);
  });

  test('uninstall removes functions, types, settings and the schema it made; a second run says so', async () => {
    const r = pgbg('uninstall', '--database', db.url);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /removed the SQL API/);
    await withClient(db.url, async (c) => {
      const left = await c.query("SELECT count(*)::int AS n FROM pg_proc WHERE proname LIKE 'pg_background%' OR proname LIKE '%pg_background_privileges'");
      assert.equal(left.rows[0].n, 0);
      assert.equal((await c.query("SELECT count(*)::int AS n FROM pg_namespace WHERE nspname IN ('bg', 'pgbg_private')")).rows[0].n, 0);
      assert.equal((await c.query("SELECT current_setting('pg_background.max_workers', true) AS s")).rows[0].s, null);
    });
    assert.match(pgbg('uninstall', '--database', db.url).stdout, /was not installed here/);
  });

  test('an install by an earlier pgbg (its migrations, one shared secret) is upgraded in place by install', async () => {
    await withClient(db.url, (c) => legacyInstall(c, 'host=127.0.0.1 port=1 user=pgbg password=x'));
    const r = pgbg('install', '--database', db.url, '--data', data);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /upgraded the SQL API \(made by an earlier pgbg\) in schema public/);
    await withClient(db.url, async (c) => {
      assert.equal((await c.query("SELECT to_regclass('pgbg_private.migrations') AS t")).rows[0].t, null, 'nothing of the chain is left');
      assert.equal((await c.query("SELECT count(*)::int AS n FROM pg_proc WHERE prosecdef AND proname LIKE 'pg_background%'")).rows[0].n, 0);
      const srv = await c.query("SELECT srvoptions FROM pg_foreign_server WHERE srvname = 'pgbg'");
      assert.ok(!srv.rows[0].srvoptions.includes('port=1'), 'the server address is the current one');
    });
    assert.equal(pgbg('uninstall', '--database', db.url).code, 0);
  });
});
