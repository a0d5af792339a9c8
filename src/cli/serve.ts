/**
 * `pgbg serve --embedded`: an embedded PostgreSQL (with dblink), the SQL API
 * installed in its `postgres` database, and the pgbg server that the API
 * reaches through dblink. Workers log in over the server's private Unix socket
 * (trust), as each caller's own role.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { Engine } from '../engine/engine.js';
import { startEmbeddedPostgres } from '../embedded/postgres.js';
import { install } from '../install/install.js';
import { SqlApiHandler } from '../server/sql-api-handler.js';
import { startWireServer } from '../server/wire.js';

export interface ServeOptions {
  embedded: boolean;
  port?: number;
  data: string;
  logLevel: string;
}

export async function serve(options: ServeOptions): Promise<void> {
  if (!options.embedded) throw new Error('only --embedded is available yet: see the README');
  const logger = pino({ level: options.logLevel }, pino.destination(2));
  const db = await startEmbeddedPostgres({ dataDir: path.join(options.data, 'pg'), port: options.port ?? 0, trustLocalSocket: true });
  const engine = new Engine({ logger });
  const handler = new SqlApiHandler(engine, (database, user) => ({ host: db.socketDir, port: db.port, user, database }));
  const secret = randomBytes(24).toString('base64url');
  const wire = await startWireServer({ handler, logger, authenticate: (user) => (user === 'pgbg' ? { password: secret } : undefined) });
  const admin = new pg.Client({ connectionString: db.url('postgres') });
  await admin.connect();
  try {
    await install(admin, { serverConnstr: `host=127.0.0.1 port=${wire.port} user=pgbg password=${secret} dbname=postgres` });
  } finally {
    await admin.end();
  }
  const shown = new URL(db.url('postgres'));
  shown.password = '';
  process.stdout.write(`ready: ${shown.toString().replace(':@', '@')}\n`);
  const passwordFile = `${path.resolve(options.data, 'pg')}.password`;
  process.stdout.write(`  the password is in ${passwordFile}; try:\n`);
  process.stdout.write(`  PGPASSWORD=$(cat ${passwordFile}) psql "${shown.toString().replace(':@', '@')}" -c "SELECT * FROM pg_background_result(pg_background_launch('SELECT 42')) AS (x int)"\n`);

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      logger.info('stopping: letting running jobs finish (30 s at most)');
      await wire.close();
      await engine.close({ graceMs: 30_000 });
      await db.stop();
      process.exit(0);
    })();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
