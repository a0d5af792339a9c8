/**
 * The operators' HTTP API of `pgbg serve`: status, jobs (running ones from the
 * engine, recent ones from the journal), cancel, stats, Prometheus metrics,
 * and the unauthenticated health checks /healthz and /readyz. Every route but
 * those two needs the bearer token (http-server.ts); the only write is cancel.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Engine } from '../engine/engine.js';
import type { JobSnapshot } from '../engine/types.js';
import { journalJob, recentJobs, type JournalJob } from '../journal/journal-reads.js';
import type { Journal } from '../journal/journal.js';
import { SqlState } from '../protocol/errors.js';
import { HttpError, startHttpServer, type HttpRequest, type HttpServer, type Route } from './http-server.js';
import type { ServerMetrics } from './metrics.js';
import { ReadinessProbe } from './readiness.js';

export interface HttpApiOptions {
  host: string;
  port: number;
  token: string;
  logger: Logger;
  engine: Engine;
  journal: Journal;
  metrics: ServerMetrics;
  /** The journal's database: the API reads the journal and probes readiness through a small pool of its own. */
  database: pg.ClientConfig;
  /** True once the server is stopping (/readyz then answers 503). */
  stopping: () => boolean;
}

export interface HttpApi extends HttpServer {
  readonly readiness: ReadinessProbe;
}

/** A job as the API shows it. */
export interface JobView {
  cookie: string;
  pid: number;
  /** The server run that launched it (this one's: Journal.runId). */
  run: string;
  label: string | null;
  role: string;
  database: string;
  state: string;
  launchedAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
  /** From getting a worker to the end (or now, while it runs). */
  durationMs: number | null;
  /** Running jobs only: the latest report (pct -1 before any). */
  progress: { pct: number; message: string | null; at: Date | null } | null;
  /** Running jobs only: result rows the worker sent so far. */
  rows: number | null;
  sqlState: string | null;
  error: string | null;
  /** The first 120 characters of the SQL; '' with --journal-sql none. */
  sqlPreview: string;
}

const PACKAGE_VERSION = ((): string => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
})();

const MAX_LIMIT = 1000;
const CANCEL_BODY = z.object({ graceMs: z.number().int().min(0).max(30_000).optional() }).strict();

function durationMs(start: Date | null | undefined, end: Date | null | undefined): number | null {
  return start ? (end ?? new Date()).getTime() - start.getTime() : null;
}

function parseCookie(text: string): bigint {
  const cookie = /^-?\d{1,19}$/.test(text) ? BigInt(text) : undefined;
  if (cookie === undefined || cookie < -(2n ** 63n) || cookie >= 2n ** 63n) throw new HttpError(400, '22P02', 'a cookie is a whole number (int8)');
  return cookie;
}

function parseLimit(q: URLSearchParams): number {
  const text = q.get('limit');
  if (text === null) return 100;
  const n = Number(text);
  if (!/^\d{1,4}$/.test(text) || n < 1 || n > MAX_LIMIT) throw new HttpError(400, SqlState.invalidParameterValue, `limit: a whole number from 1 to ${MAX_LIMIT}`);
  return n;
}

function parseFlag(q: URLSearchParams, name: string): boolean {
  const text = q.get(name);
  if (text === null || text === '0' || text === 'false') return false;
  if (text === '1' || text === 'true') return true;
  throw new HttpError(400, SqlState.invalidParameterValue, `${name}: 1 or 0`);
}

export async function startHttpApi(options: HttpApiOptions): Promise<HttpApi> {
  const { engine, journal, metrics } = options;
  const startedAt = new Date();
  const db = new pg.Pool({
    ...options.database, application_name: 'pgbg http', max: 2, idleTimeoutMillis: 10_000,
    connectionTimeoutMillis: 2000, statement_timeout: 2000, query_timeout: 3000,
  });
  db.on('error', (err) => options.logger.debug({ err: err.message }, 'HTTP API: an idle connection failed'));
  const readiness = new ReadinessProbe({
    db, journalTable: `${journal.schema}.jobs`, journalLag: () => journal.lag, stopping: options.stopping,
  });

  const fromEngine = (s: JobSnapshot): JobView => ({
    cookie: s.cookie.toString(), pid: s.pid, run: journal.runId, label: s.label ?? null, role: s.role, database: s.database,
    state: s.state, launchedAt: s.launchedAt, startedAt: s.startedAt ?? null, endedAt: s.endedAt ?? null,
    durationMs: durationMs(s.startedAt, s.endedAt), progress: s.progress, rows: s.rowsReceived,
    sqlState: s.errorCode ?? null, error: s.errorMessage ?? null, sqlPreview: journal.storesSql ? s.sqlPreview : '',
  });
  const fromJournal = (j: JournalJob): JobView => ({
    cookie: j.cookie, pid: j.pid, run: j.runId, label: j.label, role: j.role, database: j.database, state: j.state,
    launchedAt: j.launchedAt, startedAt: j.startedAt, endedAt: j.endedAt,
    durationMs: j.state === 'running' ? durationMs(j.startedAt, null) : j.endedAt ? durationMs(j.startedAt, j.endedAt) : null,
    progress: null, rows: null, sqlState: j.errorCode, error: j.errorMessage, sqlPreview: j.sqlPreview,
  });
  const poolView = () => ({
    maxConnections: engine.pool.options.maxConnections,
    maxConnectionsPerLogin: engine.pool.options.maxConnectionsPerLogin,
    connections: engine.pool.size,
    logins: [...engine.pool.connectionsByLogin()].map(([login, counts]) => ({ login, ...counts })),
    queuedLaunches: engine.pool.queuedLaunches,
  });
  const journalView = () => {
    const lag = journal.lag;
    return { pendingRecords: lag.pending, lagMs: lag.pendingSince ? Date.now() - lag.pendingSince.getTime() : 0, lastWriteAt: lag.lastWriteAt };
  };

  const jobs = async ({ query }: HttpRequest) => {
    const limit = parseLimit(query);
    const label = query.get('label') ?? undefined;
    if (label !== undefined && Buffer.byteLength(label) > 64) throw new HttpError(400, SqlState.invalidParameterValue, 'label: at most 64 bytes');
    const running = engine.runningSnapshots().filter((s) => label === undefined || s.label === label)
      .sort((a, b) => b.launchedAt.getTime() - a.launchedAt.getTime()).map(fromEngine);
    if (parseFlag(query, 'running')) return { json: { jobs: running.slice(0, limit) } };
    const shown = new Set(running.map((j) => j.cookie));
    const recent = (await recentJobs(db, journal.schema, { limit, label }))
      .filter((j) => !(j.runId === journal.runId && shown.has(j.cookie))).map(fromJournal);
    return { json: { jobs: [...running, ...recent].slice(0, limit) } };
  };

  const job = async ({ params }: HttpRequest) => {
    const cookie = parseCookie(params[0]!);
    const live = engine.runningSnapshots().find((s) => s.cookie === cookie);
    if (live) return { json: fromEngine(live) };
    const recorded = await journalJob(db, journal.schema, journal.runId, cookie);
    if (!recorded) throw new HttpError(404, SqlState.undefinedObject, `no job with cookie ${cookie}`);
    return { json: fromJournal(recorded) };
  };

  const cancel = async ({ params, body }: HttpRequest) => {
    const cookie = parseCookie(params[0]!);
    const parsed = CANCEL_BODY.safeParse(body ?? {});
    if (!parsed.success) throw new HttpError(400, SqlState.invalidParameterValue, 'the body is {"graceMs": 0..30000} (or empty)');
    const ended = await engine.cancelByCookie(cookie, parsed.data.graceMs ?? 0);
    if (ended) return { json: { canceled: ended.state === 'canceled', job: fromEngine(ended) } };
    const recorded = await journalJob(db, journal.schema, journal.runId, cookie);
    if (!recorded) throw new HttpError(404, SqlState.undefinedObject, `no job with cookie ${cookie}`);
    throw new HttpError(409, SqlState.objectNotInPrerequisiteState, `job ${cookie} is not running on this server (${recorded.state})`);
  };

  const routes: Route[] = [
    { path: /^\/healthz$/, auth: false, methods: { GET: () => ({ json: { status: 'ok', uptimeSeconds: (Date.now() - startedAt.getTime()) / 1000 } }) } },
    {
      path: /^\/readyz$/, auth: false,
      methods: {
        GET: async () => {
          const r = await readiness.check();
          return r.ready ? { json: { status: 'ready' } } : { status: 503, json: { status: 'unavailable', reason: r.reason, code: r.code } };
        },
      },
    },
    {
      path: /^\/metrics$/, auth: true,
      methods: {
        GET: async () => {
          const { text, contentType } = await metrics.scrape();
          return { text, contentType };
        },
      },
    },
    {
      path: /^\/api\/status$/, auth: true,
      methods: {
        GET: async () => {
          const r = await readiness.check();
          return {
            json: {
              version: PACKAGE_VERSION, startedAt, uptimeSeconds: (Date.now() - startedAt.getTime()) / 1000,
              postgres: { version: r.postgresVersion ?? null, ready: r.ready, ...(r.ready ? {} : { reason: r.reason, code: r.code }) },
              pool: poolView(), jobs: { running: engine.runningJobs, started: engine.jobsStarted }, journal: { run: journal.runId, ...journalView() },
            },
          };
        },
      },
    },
    { path: /^\/api\/jobs$/, auth: true, methods: { GET: jobs } },
    { path: /^\/api\/jobs\/([^/]+)$/, auth: true, methods: { GET: job } },
    { path: /^\/api\/jobs\/([^/]+)\/cancel$/, auth: true, methods: { POST: cancel } },
    {
      path: /^\/api\/stats$/, auth: true,
      methods: {
        GET: () => ({
          json: {
            ...metrics.totals(), jobsRunning: engine.runningJobs, launchesQueued: engine.pool.queuedLaunches,
            queuedResultBytes: engine.budgets.total, maxQueueBytesPerLogin: engine.budgets.limit, journal: journalView(),
          },
        }),
      },
    },
  ];

  let server: HttpServer;
  try {
    server = await startHttpServer({ host: options.host, port: options.port, token: options.token, routes, logger: options.logger });
  } catch (err) {
    await db.end();
    throw err;
  }
  return {
    host: server.host, port: server.port, url: server.url, readiness,
    async close() {
      await server.close();
      await db.end().catch(() => undefined);
    },
  };
}
