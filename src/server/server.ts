/**
 * The pgbg server: the engine, its journal and the wire endpoint serving the
 * SQL API. `pgbg serve` runs one; tests and benchmarks start it in-process.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import { Engine, type ShutdownReport } from '../engine/engine.js';
import { Journal, type LostJob } from '../journal/journal.js';
import type { PoolOptions } from '../workers/pool.js';
import { fullCollection, MemoryRelease } from './memory-release.js';
import { API_LOGIN, type ServerIdentity } from './identity.js';
import { SqlApiHandler, type CredentialsFor } from './sql-api-handler.js';
import { startWireServer, type WireServer } from './wire.js';

export interface ServerOptions {
  /** Where the journal lives: a login allowed to create the journal's schema. */
  journalDatabase: pg.ClientConfig | string;
  /** @default 'pgbg_server' */
  journalSchema?: string;
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
}

export interface RunningServer {
  readonly host: string;
  readonly port: number;
  readonly engine: Engine;
  /** Jobs earlier runs left unfinished, now marked lost in the journal. */
  readonly lost: LostJob[];
  /** Times memory was released after a quiet period (see releaseMemoryAfterMs). */
  readonly memoryReleases: number;
  /** Stops accepting, lets running jobs finish for up to `graceMs`, cancels the rest and reports. */
  stop(graceMs: number): Promise<ShutdownReport>;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { logger } = options;
  const journalClient = new pg.Client(
    typeof options.journalDatabase === 'string'
      ? { connectionString: options.journalDatabase, application_name: 'pgbg journal' }
      : { ...options.journalDatabase, application_name: 'pgbg journal' },
  );
  await journalClient.connect();
  journalClient.on('error', (err) => logger.error({ err: err.message }, 'journal connection failed'));
  const { journal, lost } = await Journal.open(journalClient, logger, options.journalSchema);
  for (const job of lost) {
    logger.warn({ run: job.runId, pid: job.pid, database: job.database, role: job.role, sql: job.sqlPreview, launchedAt: job.launchedAt }, 'job lost: an earlier run of the server stopped before it ended');
  }
  const engine = new Engine({
    logger,
    observer: journal,
    ...(options.pool ? { pool: options.pool } : {}),
    ...(options.maxQueueBytesPerLogin !== undefined ? { maxQueueBytesPerLogin: options.maxQueueBytesPerLogin } : {}),
  });
  let wire: WireServer;
  try {
    await engine.ready();
    const handler = new SqlApiHandler(engine, options.credentials);
    const secret = options.identity.secret;
    wire = await startWireServer({
      handler,
      logger,
      host: options.host ?? '127.0.0.1',
      port: options.identity.port,
      ...(options.maxRequestBytes !== undefined ? { maxRequestBytes: options.maxRequestBytes } : {}),
      authenticate: (user) => (user === API_LOGIN ? { password: secret } : undefined),
    });
  } catch (err) {
    await engine.close({ graceMs: 0 });
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

  let stopping: Promise<ShutdownReport> | undefined;
  return {
    host: wire.host,
    port: wire.port,
    engine,
    lost,
    get memoryReleases() {
      return memory?.releases ?? 0;
    },
    stop(graceMs) {
      stopping ??= (async () => {
        memory?.stop();
        await wire.close();
        const report = await engine.close({ graceMs });
        await journal.close();
        logger.info({ finished: report.finished, canceled: report.canceled.length }, 'server stopped');
        for (const job of report.canceled) {
          logger.warn({ pid: job.pid, database: job.database, role: job.role, sql: job.sqlPreview }, 'job canceled at shutdown: it did not finish within the grace period');
        }
        return report;
      })();
      return stopping;
    },
  };
}
