/**
 * The pgbg server: the engine, its journal and the wire endpoint serving the
 * SQL API. `pgbg serve` runs one; tests and benchmarks start it in-process.
 */
import pg from 'pg';
import { parse as parseConnectionString } from 'pg-connection-string';
import type { Logger } from 'pino';
import { Engine, type ShutdownReport } from '../engine/engine.js';
import { combineObservers } from '../engine/observer.js';
import { jobEndLog } from './job-log.js';
import { Journal, type JournalOptions, type LostJob } from '../journal/journal.js';
import type { PoolOptions } from '../workers/pool.js';
import { startHttpApi, type HttpApi } from './http-api.js';
import { fullCollection, MemoryRelease } from './memory-release.js';
import { ServerMetrics } from './metrics.js';
import type { ServerIdentity } from './identity.js';
import { RoleKeys } from './role-keys.js';
import { roleOfLogin, SqlApiHandler, type CredentialsFor } from './sql-api-handler.js';
import { startWireServer, type WireServer } from './wire.js';

export interface ServerOptions {
  /** Where the journal lives: a login allowed to create the journal's schema. */
  journalDatabase: pg.ClientConfig | string;
  /**
   * The login that reads each database's role keys (pgbg_private.role_keys) and
   * sees its backends: the role that installed the API there, or a superuser.
   * @default journalDatabase's login, in the database asked for
   */
  admin?: (database: string) => pg.ClientConfig;
  /** @default 'pgbg_server' */
  journalSchema?: string;
  /** Retention and whether SQL text is stored. */
  journal?: JournalOptions;
  credentials: CredentialsFor;
  identity: ServerIdentity;
  /** Address to listen on. @default '127.0.0.1' */
  host?: string;
  logger: Logger;
  pool?: PoolOptions;
  /**
   * After this long without activity (no job started or ended, no worker
   * connection opened or closed), collect garbage so that memory a burst
   * left behind goes back. 0 = never. @default 3000
   */
  releaseMemoryAfterMs?: number;
  /** The longest request the endpoint accepts; longer ones get 54000 (see WireServerOptions.maxRequestBytes). @default 16 MB */
  maxRequestBytes?: number;
  /** Memory budget per login for unread results (see EngineOptions.maxQueueBytesPerLogin). @default 256 MB */
  maxQueueBytesPerLogin?: number;
  /** The operators' HTTP API (status, jobs, cancel, metrics, health: http-api.ts); none when not given. */
  http?: { host: string; port: number; token: string };
}

export interface RunningServer {
  readonly host: string;
  readonly port: number;
  readonly engine: Engine;
  /** Jobs earlier runs left unfinished, now marked lost in the journal. */
  readonly lost: LostJob[];
  /** The HTTP API, when asked for (its `url`). */
  readonly http: { readonly url: string; readonly host: string; readonly port: number } | undefined;
  /** Stops accepting, lets running jobs finish for up to `graceMs`, cancels the rest and reports. */
  stop(graceMs: number): Promise<ShutdownReport>;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { logger } = options;
  const connectJournal = async () => {
    const client = new pg.Client(
      typeof options.journalDatabase === 'string'
        ? { connectionString: options.journalDatabase, application_name: 'pgbg journal' }
        : { ...options.journalDatabase, application_name: 'pgbg journal' },
    );
    client.on('error', (err) => logger.error({ err: err.message }, 'journal connection failed'));
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    return client;
  };
  const { journal, lost } = await Journal.open(await connectJournal(), logger, options.journalSchema, { ...options.journal, reconnect: connectJournal });
  // Never the SQL text in the log: it can hold passwords (the journal has it, unless told not to keep it).
  for (const job of lost) {
    logger.warn({ run: job.runId, pid: job.pid, database: job.database, role: job.role, launchedAt: job.launchedAt }, 'job lost: an earlier run of the server stopped before it ended');
  }
  const metrics = options.http ? new ServerMetrics() : undefined;
  const engine = new Engine({
    logger,
    observer: combineObservers(journal, metrics, jobEndLog(logger)),
    ...(options.pool ? { pool: options.pool } : {}),
    ...(options.maxQueueBytesPerLogin !== undefined ? { maxQueueBytesPerLogin: options.maxQueueBytesPerLogin } : {}),
  });
  const keys = new RoleKeys(options.admin ?? adminFrom(options.journalDatabase), logger, journalDatabaseName(options.journalDatabase));
  metrics?.observe({ engine, journalLag: () => journal.lag });
  let wire: WireServer;
  let http: HttpApi | undefined;
  let stopping: Promise<ShutdownReport> | undefined;
  try {
    await engine.ready();
    const handler = new SqlApiHandler({
      engine, credentialsFor: options.credentials, keys, ...(metrics ? { onRequest: (op) => metrics.request(op) } : {}),
    });
    wire = await startWireServer({
      handler,
      logger,
      host: options.host ?? '127.0.0.1',
      port: options.identity.port,
      ...(options.maxRequestBytes !== undefined ? { maxRequestBytes: options.maxRequestBytes } : {}),
      // Each role logs in as r<oid> with its own secret; the server holds only its SCRAM verifier.
      authenticate: async (user, database) => {
        const oid = roleOfLogin(user);
        const key = oid === undefined ? undefined : await keys.read(database, oid);
        return key ? { scramVerifier: key.scram } : undefined;
      },
    });
    if (options.http && metrics) {
      http = await startHttpApi({
        ...options.http, logger, engine, journal, metrics, database: configOf(options.journalDatabase), stopping: () => stopping !== undefined,
      }).catch(async (err: unknown) => {
        await wire.close();
        throw err;
      });
    }
  } catch (err) {
    await engine.close({ graceMs: 0 });
    await keys.close();
    await journal.close();
    throw err;
  }

  const quietMs = options.releaseMemoryAfterMs ?? 3000;
  const memory = quietMs > 0
    ? new MemoryRelease({
      quietMs,
      activity: () => `${engine.jobsStarted}/${engine.runningJobs}/${engine.pool.size}`,
      release: fullCollection(),
      released: (ms) => logger.debug({ ms: Math.round(ms), rss: process.memoryUsage.rss() }, 'quiet: garbage collected'),
    })
    : undefined;

  return {
    host: wire.host,
    port: wire.port,
    engine,
    lost,
    http: http && { url: http.url, host: http.host, port: http.port },
    stop(graceMs) {
      stopping ??= (async () => {
        memory?.stop();
        await wire.close();
        const report = await engine.close({ graceMs });
        await keys.close();
        await journal.close();
        // Last: /healthz answers and /readyz says "stopping" while the jobs drain.
        await http?.close();
        logger.info({ finished: report.finished, canceled: report.canceled.length }, 'server stopped');
        for (const job of report.canceled) {
          logger.warn({ pid: job.pid, database: job.database, role: job.role }, 'job canceled at shutdown: it did not finish within the grace period');
        }
        return report;
      })();
      return stopping;
    },
  };
}

function configOf(journal: pg.ClientConfig | string): pg.ClientConfig {
  return typeof journal === 'string' ? { connectionString: journal } : journal;
}

/** The journal's login, in another database. */
function adminFrom(journal: pg.ClientConfig | string): (database: string) => pg.ClientConfig {
  const base = typeof journal === 'string' ? (parseConnectionString(journal) as pg.ClientConfig) : journal;
  return (database) => ({ ...base, database });
}

function journalDatabaseName(journal: pg.ClientConfig | string): string {
  const config = typeof journal === 'string' ? (parseConnectionString(journal) as pg.ClientConfig) : journal;
  return config.database ?? 'postgres';
}
