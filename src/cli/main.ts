#!/usr/bin/env node
/** The `pgbg` command line. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { API_VERSIONS, DEFAULT_API_VERSION, type ApiVersion } from '../install/script.js';
import { parseHttpAddress, type HttpAddress } from '../server/http-settings.js';
import { installCommand, uninstallCommand } from './install.js';
import { serve } from './serve.js';

const program = new Command('pgbg').description('background SQL for PostgreSQL');

/** A parser of a whole-number option from `min` to `max`; `what` says what is wanted. */
function wholeNumber(what: string, min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(what);
    return n;
  };
}

const portNumber = wholeNumber('a port is a whole number from 1 to 65535', 1, 65535);
const positive = wholeNumber('a whole number, 1 or more', 1);
const days = wholeNumber('days: a whole number, 0 or more', 0);
const milliseconds = wholeNumber('milliseconds: a whole number, 0 or more', 0);

function httpAddress(value: string): HttpAddress {
  try {
    return parseHttpAddress(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

const BYTE_UNITS: Record<string, number> = { '': 1, B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 };

/** A size in bytes: a whole number, optionally with kB, MB or GB (powers of 1024). */
function byteSize(value: string): number {
  const m = /^\s*(\d+)\s*(B|kB|MB|GB)?\s*$/.exec(value);
  const n = m ? Number(m[1]) * BYTE_UNITS[m[2] ?? '']! : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('a size in bytes, e.g. 16777216 or 16MB');
  return n;
}

program
  .command('serve')
  .description('run the pgbg server for a PostgreSQL (--database URL), or for an embedded one (--embedded)')
  .option('--embedded', 'start an embedded PostgreSQL with the SQL API installed', false)
  .option('--database <url>', 'the PostgreSQL to serve: a login that may create the journal schema (pgbg_server)')
  .option('--port <n>', 'embedded PostgreSQL port (default: $PGPORT, else a free one)', portNumber)
  .option('--api-port <n>', 'SQL API endpoint port (default: the one in the data folder, else a free one)', portNumber)
  .option('--listen <host>', 'address the SQL API endpoint listens on', '127.0.0.1')
  .option('--api-host <host>', 'address the database reaches the endpoint at', '127.0.0.1')
  .option('--pgpass <file>', 'worker passwords in pgpass format (host:port:database:user:password)')
  .option('--passwords <file>', 'worker passwords as JSON {"role": "password"}')
  .option('--trust-socket <dir>', 'a Unix socket directory where worker logins need no password')
  .option('--data <dir>', 'data folder, kept between runs', '.pgbg')
  .option('--max-connections <n>', 'most worker connections in all, the pool cap (default: 128)', positive)
  .option('--max-connections-per-login <n>', 'most worker connections per login (database, role) (default: a quarter of --max-connections)', positive)
  // The names before 0.2 ("workers" also means pg_background.max_workers, the handles a session tracks).
  .addOption(new Option('--max-workers <n>', 'deprecated: --max-connections').argParser(positive).hideHelp())
  .addOption(new Option('--max-workers-per-login <n>', 'deprecated: --max-connections-per-login').argParser(positive).hideHelp())
  .option('--max-queue-bytes-per-login <size>', 'memory budget per login for unread results (their queue sizes); a launch beyond it gets 53200', byteSize, 256 * 1024 ** 2)
  .option('--max-request-bytes <size>', 'longest request (SQL text) the SQL API endpoint accepts; longer ones get 54000', byteSize, 16 * 1024 ** 2)
  .option('--grace-ms <ms>', 'on SIGTERM/SIGINT, how long running jobs may finish before they are canceled', milliseconds, 30_000)
  .option('--idle-timeout-ms <ms>', 'an idle worker connection is closed after this long', positive, 30_000)
  .option('--release-memory-ms <ms>', 'after this long without activity, collect garbage so memory goes back (0 = never)', milliseconds, 3000)
  .option('--journal-retention-days <n>', 'jobs stay in the journal (pgbg_server.jobs) this many days (0 = forever)', days, 7)
  .addOption(new Option('--journal-sql <mode>', 'SQL text in the journal: the first 120 characters of each job (preview) or none').choices(['preview', 'none']).default('preview'))
  .option('--http <address>', 'the HTTP API (status, jobs, cancel, metrics, health): off, HOST or HOST:PORT (default: 127.0.0.1 and the port in the data folder, else a free one)', httpAddress, { host: '127.0.0.1' })
  .option('--log-level <level>', 'pino log level', 'info')
  .addOption(new Option('--api-version <version>', 'embedded: the pg_background surface installed in its database (an installed one is kept)').choices(API_VERSIONS).default(DEFAULT_API_VERSION))
  .addHelpText('after', '\nExamples:\n  pgbg serve --embedded --port 54329\n  pgbg serve --database postgresql://pgbg_admin@db.internal/app --pgpass ~/.pgbg.pgpass\n')
  .action(async (o: {
    embedded: boolean; database?: string; port?: number; apiPort?: number; listen: string; apiHost: string;
    pgpass?: string; passwords?: string; trustSocket?: string; data: string; graceMs: number; logLevel: string;
    maxConnections?: number; maxConnectionsPerLogin?: number; maxWorkers?: number; maxWorkersPerLogin?: number;
    idleTimeoutMs: number; releaseMemoryMs: number; maxRequestBytes: number;
    maxQueueBytesPerLogin: number; journalRetentionDays: number; journalSql: 'preview' | 'none'; apiVersion: ApiVersion; http: HttpAddress;
  }) => {
    const port = o.port ?? (process.env.PGPORT ? portNumber(process.env.PGPORT) : undefined);
    if (o.maxWorkers !== undefined) process.stderr.write('pgbg: --max-workers is deprecated: use --max-connections\n');
    if (o.maxWorkersPerLogin !== undefined) process.stderr.write('pgbg: --max-workers-per-login is deprecated: use --max-connections-per-login\n');
    const { maxWorkers, maxWorkersPerLogin, ...rest } = o;
    await serve({
      ...rest, port,
      maxConnections: o.maxConnections ?? maxWorkers ?? 128,
      maxConnectionsPerLogin: o.maxConnectionsPerLogin ?? maxWorkersPerLogin,
    });
  });

program
  .command('install')
  .description('install (or upgrade) the SQL API in a database; re-running is a no-op')
  .requiredOption('--database <url>', 'the database, as a login that may create functions there (and dblink if missing)')
  .option('--schema <name>', 'schema for the API functions and types', 'public')
  .option('--data <dir>', 'the server\'s data folder (holds its port and secret)', '.pgbg')
  .option('--api-host <host>', 'address the database reaches the pgbg server at', '127.0.0.1')
  .option('--api-port <n>', 'port of the pgbg server (default: the one in the data folder, else a free one)', portNumber)
  .addOption(new Option('--api-version <version>', 'the pg_background SQL surface: 2.0, or 1.8 (2.0 over an installed 1.8 upgrades it; default: the installed one, else 2.0)').choices(API_VERSIONS))
  .action(async (o: { database: string; schema: string; data: string; apiHost: string; apiPort?: number; apiVersion?: ApiVersion }) => installCommand(o));

program
  .command('uninstall')
  .description('remove the SQL API from a database (dblink stays)')
  .requiredOption('--database <url>', 'the database')
  .option('--drop-role', 'also drop pgbackground_role (shared by all databases of the server)', false)
  .action(async (o: { database: string; dropRole: boolean }) => uninstallCommand(o));

program.parseAsync().catch((err: unknown) => {
  const code = (err as { code?: unknown }).code;
  console.error(`pgbg: ${err instanceof Error ? err.message : String(err)}${typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? ` (SQLSTATE ${code})` : ''}`);
  process.exit(1);
});
