/**
 * `npm run schema`: installs each SQL surface into a fresh database of an embedded
 * PostgreSQL and writes what install created to src/install/schema-<version>.sql.
 */
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/embedded/postgres.js';
import { install } from '../src/install/install.js';
import { API_VERSIONS } from '../src/install/script.js';
import { dumpSchema } from '../src/install/schema-dump.js';

const schemaFile = (version: string) => path.resolve(import.meta.dirname, `../src/install/schema-${version}.sql`);

const tmp = await mkdtemp(path.join(os.tmpdir(), 'pgbg-schema-'));
await chmod(tmp, 0o755);
const server = await startEmbeddedPostgres({ dataDir: path.join(tmp, 'data') });
try {
  const client = new pg.Client({ connectionString: server.url('postgres') });
  await client.connect();
  try {
    for (const v of API_VERSIONS) await client.query(`CREATE DATABASE "pgbg_schema_${v}"`);
  } finally {
    await client.end();
  }
  for (const version of API_VERSIONS) {
    const db = new pg.Client({ connectionString: server.url(`pgbg_schema_${version}`) });
    await db.connect();
    try {
      await install(db, { endpoint: { host: '127.0.0.1', port: 1 }, apiVersion: version });
      await writeFile(schemaFile(version), await dumpSchema(db));
      process.stdout.write(`wrote ${schemaFile(version)}\n`);
    } finally {
      await db.end();
    }
  }
} finally {
  await server.stop();
  await rm(tmp, { recursive: true, force: true });
}
