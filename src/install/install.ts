/**
 * Installs the SQL API into a database: versioned migrations from
 * src/install/sql (applied once each, in order, in one transaction; re-running
 * is a no-op), then the server's connection string for the wrappers.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';

export interface InstallOptions {
  /** Schema for the API. @default 'public' */
  schema?: string;
  /** libpq connection string of the pgbg server (with its secret). */
  serverConnstr: string;
}

const SQL_DIR = path.join(import.meta.dirname, 'sql');

export async function migrations(): Promise<{ version: number; file: string }[]> {
  const files = (await readdir(SQL_DIR)).filter((f) => /^\d{4}_.*\.sql$/.test(f)).sort();
  return files.map((file) => ({ version: Number(file.slice(0, 4)), file }));
}

/** Applies what is missing; returns the versions applied now. */
export async function install(client: pg.ClientBase, options: InstallOptions): Promise<number[]> {
  const schema = quoteIdent(options.schema ?? 'public');
  const applied: number[] = [];
  await client.query('BEGIN');
  try {
    await client.query('CREATE EXTENSION IF NOT EXISTS dblink');
    const { rows } = await client.query<{ nspname: string }>(
      "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'dblink'",
    );
    const dblink = quoteIdent(rows[0]!.nspname);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query('CREATE SCHEMA IF NOT EXISTS pgbg_private');
    await client.query('REVOKE ALL ON SCHEMA pgbg_private FROM PUBLIC');
    await client.query('CREATE TABLE IF NOT EXISTS pgbg_private.migrations (version int PRIMARY KEY, schema_name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    const done = new Set((await client.query<{ version: number }>('SELECT version FROM pgbg_private.migrations')).rows.map((r) => r.version));
    for (const m of await migrations()) {
      if (done.has(m.version)) continue;
      const text = (await readFile(path.join(SQL_DIR, m.file), 'utf8')).replaceAll('@schema@', schema).replaceAll('@dblink@', dblink);
      await client.query(text);
      await client.query('INSERT INTO pgbg_private.migrations (version, schema_name) VALUES ($1, $2)', [m.version, options.schema ?? 'public']);
      applied.push(m.version);
    }
    await client.query('DELETE FROM pgbg_private.server');
    await client.query('INSERT INTO pgbg_private.server (connstr) VALUES ($1)', [options.serverConnstr]);
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK');
    throw err;
  }
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
