/**
 * `npm run schema`: installs the SQL API into a fresh database of an embedded
 * PostgreSQL and writes what install created to src/install/schema.sql.
 */
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/embedded/postgres.js';
import { install } from '../src/install/install.js';
import { dumpSchema } from '../src/install/schema-dump.js';

export const SCHEMA_FILE = path.resolve(import.meta.dirname, '../src/install/schema.sql');

const tmp = await mkdtemp(path.join(os.tmpdir(), 'pgbg-schema-'));
await chmod(tmp, 0o755);
const server = await startEmbeddedPostgres({ dataDir: path.join(tmp, 'data') });
try {
  const client = new pg.Client({ connectionString: server.url('postgres') });
  await client.connect();
  try {
    await client.query('CREATE DATABASE pgbg_schema');
  } finally {
    await client.end();
  }
  const db = new pg.Client({ connectionString: server.url('pgbg_schema') });
  await db.connect();
  try {
    await install(db, { endpoint: { host: '127.0.0.1', port: 1 } });
    await writeFile(SCHEMA_FILE, await dumpSchema(db));
    process.stdout.write(`wrote ${SCHEMA_FILE}\n`);
  } finally {
    await db.end();
  }
} finally {
  await server.stop();
  await rm(tmp, { recursive: true, force: true });
}
