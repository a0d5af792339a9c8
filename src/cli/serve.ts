/**
 * `pgbg serve`: the pgbg server, for an existing PostgreSQL (`--database URL`)
 * or for an embedded one (`--embedded`: PostgreSQL with dblink in `--data`,
 * the SQL API installed in its `postgres` database and packaged for
 * `CREATE EXTENSION pg_background`; workers log in over its private Unix
 * socket, as each caller's own role).
 */
import path from 'node:path';
import pg from 'pg';
import { parse as parseConnstr } from 'pg-connection-string';
import { pino, type Logger } from 'pino';
import { startEmbeddedPostgres, type EmbeddedServer } from '../embedded/postgres.js';
import { writeExtension } from '../install/extension.js';
import { install, installedSchema, type Endpoint } from '../install/install.js';
import type { ApiVersion } from '../install/script.js';
import { loadCredentials } from '../server/credentials.js';
import { loadHttpSettings, isLoopback, type HttpAddress, type HttpSettings } from '../server/http-settings.js';
import { endpointOf, loadIdentity } from '../server/identity.js';
import { startServer, type RunningServer } from '../server/server.js';

export interface ServeOptions {
  embedded: boolean;
  /** The PostgreSQL to serve (not with --embedded). */
  database?: string | undefined;
  /** Embedded PostgreSQL port. */
  port?: number | undefined;
  /** Port of the SQL API endpoint; stored in the data folder. */
  apiPort?: number | undefined;
  /** Address the SQL API endpoint listens on. */
  listen: string;
  /** Address the database uses to reach the endpoint (stored in the installed API). */
  apiHost: string;
  data: string;
  pgpass?: string | undefined;
  passwords?: string | undefined;
  trustSocket?: string | undefined;
  graceMs: number;
  logLevel: string;
  /** Pool caps: worker connections in all and per login (default: a quarter of maxConnections). */
  maxConnections: number;
  maxConnectionsPerLogin?: number | undefined;
  /** Memory budget per login for unread results. */
  maxQueueBytesPerLogin: number;
  /** Idle worker connections are closed after this long. */
  idleTimeoutMs: number;
  /** Garbage is collected after this long without activity; 0 = never. */
  releaseMemoryMs: number;
  /** Journal: days a job stays on record (0 = forever), and whether its SQL text is stored. */
  journalRetentionDays: number;
  journalSql: 'preview' | 'none';
  /** Longest request the SQL API endpoint accepts. */
  maxRequestBytes: number;
  /** Embedded: the surface a fresh install of its database gets. */
  apiVersion: ApiVersion;
  /** The operators' HTTP API: off, or where it listens (the port: stored in the data folder). */
  http: HttpAddress;
}

export async function serve(options: ServeOptions): Promise<void> {
  const logger = pino({ level: options.logLevel }, pino.destination(2));
  const identity = await loadIdentity(options.data, options.apiPort);
  const endpoint = endpointOf(options.apiHost, identity);
  const http: HttpSettings | undefined = options.http === 'off' ? undefined : await loadHttpSettings(options.data, options.http);
  if (http && !isLoopback(http.host)) {
    logger.warn({ host: http.host }, 'the HTTP API listens beyond loopback: it speaks plaintext, so its token crosses the network in clear');
  }
  let embedded: EmbeddedServer | undefined;
  let adminUrl: string;
  let credentials;
  if (options.embedded) {
    embedded = await startEmbeddedPostgres({
      dataDir: path.join(options.data, 'pg'), port: options.port ?? 0, trustLocalSocket: true,
      // Room for every worker plus the callers, their dblink connections and the server's own.
      settings: { max_connections: String(Math.max(200, options.maxConnections + 100)) },
    });
    adminUrl = embedded.url('postgres');
    credentials = loadCredentials({ host: embedded.host, port: embedded.port, trustSocketDir: embedded.socketDir, pgpassFile: options.pgpass, passwordsFile: options.passwords });
    await writeExtension(embedded.extensionDir, endpoint);
  } else {
    if (!options.database) throw new Error('give --database URL (the PostgreSQL to serve) or --embedded');
    if (!options.pgpass && !options.passwords && !options.trustSocket) {
      throw new Error('no credentials for worker logins: give --pgpass FILE, --passwords FILE or --trust-socket DIR (see the README)');
    }
    adminUrl = options.database;
    const target = parseConnstr(adminUrl);
    credentials = loadCredentials({
      host: target.host ?? '127.0.0.1', port: Number(target.port ?? 5432),
      trustSocketDir: options.trustSocket, pgpassFile: options.pgpass, passwordsFile: options.passwords,
    });
  }

  let server: RunningServer;
  let surface: ApiVersion | undefined;
  try {
    surface = await prepareDatabases(adminUrl, endpoint, options.embedded ? options.apiVersion : undefined, logger);
    server = await startServer({
      journalDatabase: adminUrl, credentials, identity, host: options.listen, logger, releaseMemoryAfterMs: options.releaseMemoryMs,
      journal: { retentionDays: options.journalRetentionDays, sql: options.journalSql },
      maxRequestBytes: options.maxRequestBytes, maxQueueBytesPerLogin: options.maxQueueBytesPerLogin,
      ...(http ? { http: { host: http.host, port: http.port, token: http.token } } : {}),
      pool: {
        maxConnections: options.maxConnections,
        ...(options.maxConnectionsPerLogin !== undefined ? { maxConnectionsPerLogin: Math.min(options.maxConnectionsPerLogin, options.maxConnections) } : {}),
        idleTimeoutMs: options.idleTimeoutMs,
      },
    });
  } catch (err) {
    await embedded?.stop();
    throw err;
  }

  const shown = new URL(adminUrl);
  shown.password = '';
  const url = shown.toString().replace(':@', '@');
  process.stdout.write(`ready: ${url}\n`);
  if (embedded) {
    const passwordFile = `${path.resolve(options.data, 'pg')}.password`;
    process.stdout.write(`  the password is in ${passwordFile}; try:\n`);
    process.stdout.write(`  PGPASSWORD=$(cat ${passwordFile}) psql "${url}" -c "${FIRST_QUERY[surface ?? '2.0']}"\n`);
  } else {
    process.stdout.write(`  the SQL API endpoint listens on ${server.host}:${server.port}\n`);
  }
  if (server.http && http) {
    // Where the token is, never the token itself.
    process.stdout.write(`  HTTP API: ${server.http.url} (/api/status, /api/jobs, /metrics need the bearer token in ${http.tokenFile}; /healthz, /readyz do not)\n`);
    logger.info({ url: server.http.url, tokenFile: http.tokenFile }, 'HTTP API listening');
  }
  if (server.lost.length > 0) {
    process.stdout.write(`  ${server.lost.length} job(s) of an earlier run were lost (the server stopped before they ended): see pgbg_server.jobs WHERE state = 'lost'\n`);
  }

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    logger.info({ graceMs: options.graceMs }, 'stopping: no new requests; letting running jobs finish');
    void (async () => {
      const report = await server.stop(options.graceMs);
      process.stdout.write(`stopped: ${report.finished} running job(s) finished, ${report.canceled.length} canceled at the deadline\n`);
      await embedded?.stop();
      process.exit(0);
    })().catch((err: unknown) => {
      logger.error({ err: (err as Error).message }, 'unclean stop');
      process.exit(1);
    });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/**
 * Embedded: installs (or upgrades) the API in `postgres`. Both modes upgrade an
 * API an earlier pgbg made, and point every database that has the API at this
 * server's address (and run: callers' connections to an earlier run are replaced).
 */
/** A first query to paste, in the surface the database has. */
const FIRST_QUERY: Record<ApiVersion, string> = {
  '2.0': "SELECT * FROM pg_background_run_query('SELECT 42', col_def => 'x int') AS r(x int)",
  '1.8': "SELECT * FROM pg_background_result(pg_background_launch('SELECT 42')) AS (x int)",
};

/** Returns the surface installed in the admin login's database, if any. */
async function prepareDatabases(adminUrl: string, endpoint: Endpoint, installHere: ApiVersion | undefined, logger: Logger): Promise<ApiVersion | undefined> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  let others: string[];
  let surface: ApiVersion | undefined;
  try {
    const installed = await installedSchema(admin);
    if (installHere !== undefined || installed !== undefined) {
      // An installed surface is kept: a 1.8 database is upgraded only when asked (pgbg install --api-version 2.0).
      const report = await install(admin, { endpoint, ...(installHere !== undefined && installed === undefined ? { apiVersion: installHere } : {}) });
      if (report.installed) logger.info({ upgradedFrom: report.upgradedFrom, apiVersion: report.apiVersion }, 'SQL API installed');
      surface = report.apiVersion;
    }
    const { rows } = await admin.query<{ datname: string }>(
      'SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate AND datname <> current_database() AND has_database_privilege(datname, \'CONNECT\')',
    );
    others = rows.map((r) => r.datname);
  } finally {
    await admin.end();
  }
  for (const datname of others) {
    const u = new URL(adminUrl);
    u.pathname = `/${encodeURIComponent(datname)}`;
    const c = new pg.Client({ connectionString: u.toString() });
    try {
      await c.connect();
      if ((await installedSchema(c)) !== undefined) {
        const report = await install(c, { endpoint });
        if (report.installed) logger.info({ database: datname, upgradedFrom: report.upgradedFrom }, 'SQL API upgraded');
        logger.info({ database: datname }, 'SQL API pointed at this server');
      }
    } catch (err) {
      logger.warn({ database: datname, err: (err as Error).message }, 'could not check this database for the SQL API');
    } finally {
      await c.end().catch(() => undefined);
    }
  }
  return surface;
}
