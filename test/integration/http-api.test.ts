/**
 * The server's HTTP API, on a whole server (startServer, in this process) with
 * the SQL API installed in a test database: the token guards every /api route
 * and /metrics (cancel included: a wrong token leaves the job running), jobs
 * launched through the SQL API show while they run and can be canceled by
 * cookie (nothing of them commits; the journal says canceled), the metrics
 * count what happened, the health checks answer without the token, and
 * requests out of bounds get JSON errors with a SQLSTATE-style code.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { freePort } from '../../src/embedded/postgres.js';
import { install } from '../../src/install/install.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { createTestDatabase, withClient } from '../helpers/db.js';
import { testLogger } from '../helpers/engine.js';
import { parseMetrics, request, sampleValue, until } from '../helpers/http.js';

describe('HTTP API', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let server: RunningServer;
  let base: string;
  let caller: pg.Client;
  let role: string;
  const token = randomBytes(32).toString('base64url');

  before(async () => {
    db = await createTestDatabase();
    role = decodeURIComponent(new URL(db.url).username);
    const port = await freePort();
    await withClient(db.url, async (c) => {
      await install(c, { endpoint: { host: '127.0.0.1', port }, apiVersion: '2.0' });
      await c.query('CREATE TABLE t (id int)');
    });
    server = await startServer({
      journalDatabase: db.url, identity: { port }, logger: testLogger(), releaseMemoryAfterMs: 0,
      credentials: (_database, user) => (user === role ? { connectionString: db.url } : undefined),
      http: { host: '127.0.0.1', port: 0, token },
    });
    base = server.http!.url;
    caller = new pg.Client({ connectionString: db.url });
    await caller.connect();
  });
  after(async () => {
    await caller?.end();
    await server?.stop(0);
    await db?.drop();
  });

  const launch = async (sql: string, label: string) =>
    (await caller.query<{ pid: number; cookie: string }>('SELECT pid, cookie::text FROM pg_background_launch($1, 0, $2)', [sql, label])).rows[0]!;
  const runningWith = async (label: string) => (await request(base, 'GET', `/api/jobs?running=1&label=${label}`, { token })).json.jobs as { cookie: string }[];

  test('without the right token every /api route and /metrics answer 401, and a cancel does nothing', async () => {
    const h = await launch('INSERT INTO t VALUES (1); SELECT pg_sleep(60)', 'unauthorized');
    const routes = [
      ['GET', '/api/status'], ['GET', '/api/jobs'], ['GET', `/api/jobs/${h.cookie}`], ['POST', `/api/jobs/${h.cookie}/cancel`],
      ['GET', '/api/stats'], ['GET', '/metrics'], ['GET', '/api/no-such-route'], ['DELETE', `/api/jobs/${h.cookie}`], ['GET', '/api'],
    ] as const;
    const wrong: Record<string, string>[] = [
      {}, { authorization: `Bearer ${token.slice(0, -1)}x` }, { authorization: `Bearer ${token}x` }, { authorization: 'Bearer ' },
      { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` }, { authorization: token },
    ];
    for (const [method, path] of routes) {
      for (const headers of wrong) {
        const r = await request(base, method, path, { headers, ...(method === 'POST' ? { body: '{"graceMs": 0}' } : {}) });
        assert.equal(r.status, 401, `${method} ${path} with ${JSON.stringify(headers)}: ${r.text}`);
        assert.equal(r.json.error.code, '28000');
        assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
      }
    }
    // The job was never touched: it still runs (its backend sleeps), and a right token cancels it.
    assert.deepEqual((await runningWith('unauthorized')).map((j) => j.cookie), [h.cookie]);
    await until(async () => (await caller.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [h.pid])).rowCount === 1,
      10_000, 'the job sleeping in its backend');
    const r = await request(base, 'POST', `/api/jobs/${h.cookie}/cancel`, { token });
    assert.equal(r.status, 200, r.text);
  });

  test('/healthz and /readyz answer without the token', async () => {
    const health = await request(base, 'GET', '/healthz');
    assert.equal(health.status, 200);
    assert.equal(health.json.status, 'ok');
    const ready = await request(base, 'GET', '/readyz');
    assert.equal(ready.status, 200, ready.text);
    assert.equal(ready.json.status, 'ready');
  });

  test('status: versions, the pool by login and state, queued launches, the journal', async () => {
    const r = await request(base, 'GET', '/api/status', { token });
    assert.equal(r.status, 200, r.text);
    const pgVersion = await withClient(db.url, async (c) => (await c.query('SHOW server_version')).rows[0].server_version as string);
    assert.equal(r.json.version, (await import('../../package.json', { with: { type: 'json' } })).default.version);
    assert.deepEqual(r.json.postgres, { version: pgVersion, ready: true });
    assert.equal(r.json.pool.queuedLaunches, 0);
    assert.equal(r.json.pool.maxConnections, 128);
    const login = (r.json.pool.logins as { login: string; idle: number; inUse: number; opening: number; resetting: number }[]).find((l) => l.login === `${role}@${db.name}`);
    assert.ok(login, `the earlier jobs' login is listed: ${r.text}`);
    assert.deepEqual(Object.keys(login).sort(), ['idle', 'inUse', 'login', 'opening', 'resetting']);
    assert.equal(r.json.journal.run.length, 36);
    assert.equal(typeof r.json.uptimeSeconds, 'number');
  });

  test('a job launched through the SQL API is listed while it runs; canceled by cookie, nothing of it commits', async () => {
    await caller.query('TRUNCATE t');
    const h = await launch("INSERT INTO t VALUES (2); SELECT pg_sleep(60), 'marker-http'", 'to-cancel');
    await until(async () => (await runningWith('to-cancel')).length === 1, 10_000, 'the job listed as running');
    const [listed] = (await request(base, 'GET', '/api/jobs?running=1&label=to-cancel', { token })).json.jobs;
    assert.deepEqual(
      [listed.cookie, listed.pid, listed.label, listed.role, listed.database, listed.state, listed.sqlPreview, listed.sqlState],
      [h.cookie, h.pid, 'to-cancel', role, db.name, 'running', "INSERT INTO t VALUES (2); SELECT pg_sleep(60), 'marker-http'", null],
    );
    assert.ok(listed.startedAt && listed.durationMs >= 0 && listed.progress.pct === -1, JSON.stringify(listed));
    const one = await request(base, 'GET', `/api/jobs/${h.cookie}`, { token });
    assert.equal(one.json.state, 'running');

    const canceled = await request(base, 'POST', `/api/jobs/${h.cookie}/cancel`, { token, body: '{"graceMs": 200}' });
    assert.equal(canceled.status, 200, canceled.text);
    assert.equal(canceled.json.canceled, true);
    assert.deepEqual([canceled.json.job.state, canceled.json.job.sqlState], ['canceled', '57014']);
    // Its effect is absent, its caller is told, the journal has it canceled.
    assert.deepEqual((await caller.query('SELECT count(*)::int AS n FROM t')).rows, [{ n: 0 }]);
    await assert.rejects(caller.query('SELECT * FROM pg_background_result($1, $2) AS r(slept text, marker text)', [h.pid, h.cookie]), { code: '57014' });
    await until(async () => (await caller.query("SELECT 1 FROM pgbg_server.jobs WHERE cookie = $1 AND state = 'canceled' AND label = 'to-cancel'", [h.cookie])).rowCount === 1,
      10_000, 'the journal recording the cancel');
    // Now from the journal: not running, listed with its end.
    assert.deepEqual(await runningWith('to-cancel'), []);
    const recent = (await request(base, 'GET', '/api/jobs?label=to-cancel', { token })).json.jobs;
    assert.deepEqual(recent.map((j: { cookie: string; state: string; sqlState: string }) => [j.cookie, j.state, j.sqlState]), [[h.cookie, 'canceled', '57014']]);
    const again = await request(base, 'POST', `/api/jobs/${h.cookie}/cancel`, { token });
    assert.deepEqual([again.status, again.json.error.code], [409, '55000']);
  });

  test('the metrics count jobs, rows, errors and requests as they happen', async () => {
    const before = parseMetrics((await request(base, 'GET', '/metrics', { token })).text);
    const stats = (await request(base, 'GET', '/api/stats', { token })).json;
    for (let i = 0; i < 3; i++) {
      await caller.query("SELECT * FROM pg_background_run_query('SELECT g FROM generate_series(1, 100) g', col_def => 'g int') AS r(g int)");
    }
    await assert.rejects(caller.query("SELECT * FROM pg_background_run_query('SELECT 1/0', col_def => 'x int') AS r(x int)"), { code: '22012' });
    const metrics = await request(base, 'GET', '/metrics', { token });
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const now = parseMetrics(metrics.text);
    const delta = (name: string, labels: Record<string, string> = {}) => sampleValue(now, name, labels) - sampleValue(before, name, labels);
    assert.equal(delta('pgbg_jobs_started_total', { role }), 4);
    assert.equal(delta('pgbg_jobs_ended_total', { state: 'stopped', role }), 3);
    assert.equal(delta('pgbg_jobs_ended_total', { state: 'error', role }), 1);
    assert.equal(delta('pgbg_worker_errors_total', { class: '22' }), 1);
    assert.equal(delta('pgbg_job_duration_seconds_count', { state: 'stopped' }), 3);
    assert.equal(delta('pgbg_job_launch_latency_seconds_count'), 4);
    assert.equal(delta('pgbg_rows_relayed_total'), 300);
    assert.ok(delta('pgbg_bytes_relayed_total') >= 300 * 4, 'bytes relayed');
    assert.equal(delta('pgbg_sql_api_requests_total', { op: 'run_query' }), 4);
    assert.equal(sampleValue(now, 'pgbg_jobs_running'), 0);
    assert.equal(sampleValue(now, 'pgbg_launches_queued'), 0);
    assert.ok(now.some((s) => s.name === 'pgbg_pool_connections' && s.labels.login === `${role}@${db.name}` && s.labels.state === 'idle'));
    assert.ok(now.some((s) => s.name === 'pgbg_journal_pending_records'));
    assert.ok(now.some((s) => s.name === 'process_resident_memory_bytes' || s.name === 'nodejs_heap_size_used_bytes'), 'the default process metrics');
    // /api/stats counts the same.
    const after = (await request(base, 'GET', '/api/stats', { token })).json;
    assert.equal(after.jobsStarted - stats.jobsStarted, 4);
    assert.equal((after.jobsEnded.stopped ?? 0) - (stats.jobsEnded.stopped ?? 0), 3);
    assert.equal(after.rowsRelayed - stats.rowsRelayed, 300);
    assert.equal((after.sqlApiRequests.run_query ?? 0) - (stats.sqlApiRequests.run_query ?? 0), 4);
  });

  test('requests out of bounds: 404, 405, 413, 400, each with a SQLSTATE-style code', async () => {
    const cases: [string, string, { body?: string }, number, string][] = [
      ['GET', '/api/jobs/123', {}, 404, '42704'],
      ['POST', '/api/jobs/123/cancel', {}, 404, '42704'],
      ['GET', '/api/nothing', {}, 404, '42704'],
      ['GET', '/nothing', {}, 404, '42704'],
      ['DELETE', '/api/jobs/123', {}, 405, '0A000'],
      ['PUT', '/api/status', {}, 405, '0A000'],
      ['POST', '/api/status', {}, 405, '0A000'],
      ['GET', '/api/jobs/123/cancel', {}, 405, '0A000'],
      ['POST', '/api/jobs/123/cancel', { body: 'x'.repeat(5000) }, 413, '54000'],
      ['POST', '/api/jobs/123/cancel', { body: '{not json' }, 400, '22P02'],
      ['POST', '/api/jobs/123/cancel', { body: '{"graceMs": 999999}' }, 400, '22023'],
      ['POST', '/api/jobs/123/cancel', { body: '{"graceMs": 1, "other": 1}' }, 400, '22023'],
      ['GET', '/api/jobs/12x', {}, 400, '22P02'],
      ['GET', '/api/jobs/99999999999999999999', {}, 400, '22P02'],
      ['GET', '/api/jobs?limit=0', {}, 400, '22023'],
      ['GET', '/api/jobs?limit=1001', {}, 400, '22023'],
      ['GET', '/api/jobs?running=yes', {}, 400, '22023'],
      ['GET', `/api/jobs?label=${'x'.repeat(65)}`, {}, 400, '22023'],
    ];
    for (const [method, path, options, status, code] of cases) {
      const r = await request(base, method, path, { token, ...options });
      assert.deepEqual([r.status, r.json?.error?.code], [status, code], `${method} ${path.slice(0, 60)}: ${r.text}`);
    }
    assert.equal((await request(base, 'DELETE', '/api/jobs/1', { token })).headers.get('allow'), 'GET');
    // limit bounds the list.
    const listed = await request(base, 'GET', '/api/jobs?limit=2', { token });
    assert.equal(listed.json.jobs.length, 2);
  });

  test('a second server in the same process counts on its own; with --journal-sql none no SQL text shows', async () => {
    const schema = `pgbg_http_${randomBytes(3).toString('hex')}`;
    const other = await startServer({
      journalDatabase: db.url, journalSchema: schema, journal: { sql: 'none' }, identity: { port: await freePort() }, logger: testLogger(),
      releaseMemoryAfterMs: 0, credentials: () => undefined, http: { host: '127.0.0.1', port: 0, token: 'another-token-another-token-another-token' },
    });
    const launcher = new pg.Client({ connectionString: db.url });
    await launcher.connect();
    try {
      const otherBase = other.http!.url;
      assert.equal((await request(otherBase, 'GET', '/api/status', { token })).status, 401, 'the first server\'s token is not this one\'s');
      const t2 = 'another-token-another-token-another-token';
      const session = other.engine.session({ launcher });
      const h = await session.launch("SELECT pg_sleep(30), 'secret-sql-text'");
      const running = (await request(otherBase, 'GET', '/api/jobs?running=1', { token: t2 })).json.jobs;
      assert.deepEqual(running.map((j: { cookie: string; sqlPreview: string }) => [j.cookie, j.sqlPreview]), [[h.cookie.toString(), '']]);
      await session.cancel(h);
      const metrics = parseMetrics((await request(otherBase, 'GET', '/metrics', { token: t2 })).text);
      assert.equal(sampleValue(metrics, 'pgbg_jobs_started_total', { role }), 1);
      assert.equal(sampleValue(metrics, 'pgbg_sql_api_requests_total', { op: 'run_query' }), 0);
      await until(async () => ((await request(otherBase, 'GET', `/api/jobs/${h.cookie}`, { token: t2 })).json.state === 'canceled'), 10_000, 'the journal recording the cancel');
      const recorded = await request(otherBase, 'GET', `/api/jobs/${h.cookie}`, { token: t2 });
      assert.equal(recorded.json.sqlPreview, '');
      assert.ok(!JSON.stringify((await request(otherBase, 'GET', '/api/jobs', { token: t2 })).json).includes('secret-sql-text'));
    } finally {
      await launcher.end();
      await other.stop(0);
      await withClient(db.url, (c) => c.query(`DROP SCHEMA ${schema} CASCADE`));
    }
  });
});
