/**
 * Installs the SQL API into a database: versioned migrations from
 * src/install/sql (applied once each, in order, in one transaction; re-running
 * is a no-op and an older install is upgraded in place), then the server's
 * connection string for the wrappers. Also: uninstall, and pointing an
 * installed API at a (restarted) server.
 */
import { randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { PgbgError, SqlState } from '../engine/errors.js';

export interface InstallOptions {
  /** Schema for the API. @default 'public' */
  schema?: string;
  /** libpq connection string of the pgbg server (with its secret). */
  serverConnstr: string;
  /** Apply migrations up to this version only (to test upgrades). */
  upTo?: number;
}

export interface InstallReport {
  /** Versions applied now (empty: it was up to date). */
  applied: number[];
  schema: string;
}

export const SQL_DIR = path.join(import.meta.dirname, 'sql');
/** Where CREATE EXTENSION pg_background binds dblink's C functions (it cannot create the dblink extension). */
export const EXTENSION_DBLINK_SCHEMA = 'pgbg_private';

/**
 * dblink's C functions the SQL API calls, bound privately in pgbg_private for an
 * API made with CREATE EXTENSION (an extension script cannot create the dblink
 * extension). Idempotent: an upgrade runs it first, so migrations may use a
 * function an older extension did not bind.
 */
export const EXTENSION_DBLINK_BINDINGS = `
CREATE OR REPLACE FUNCTION pgbg_private.dblink_connect(text, text) RETURNS text
  AS '$libdir/dblink', 'dblink_connect' LANGUAGE C STRICT PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION pgbg_private.dblink_disconnect(text) RETURNS text
  AS '$libdir/dblink', 'dblink_disconnect' LANGUAGE C STRICT PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION pgbg_private.dblink_get_connections() RETURNS text[]
  AS '$libdir/dblink', 'dblink_get_connections' LANGUAGE C PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION pgbg_private.dblink(text, text) RETURNS SETOF record
  AS '$libdir/dblink', 'dblink_record' LANGUAGE C STRICT PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION pgbg_private.dblink_exec(text, text) RETURNS text
  AS '$libdir/dblink', 'dblink_exec' LANGUAGE C STRICT PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION pgbg_private.dblink_send_query(text, text) RETURNS int4
  AS '$libdir/dblink', 'dblink_send_query' LANGUAGE C STRICT PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION pgbg_private.dblink_get_result(text) RETURNS SETOF record
  AS '$libdir/dblink', 'dblink_get_result' LANGUAGE C STRICT PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION pgbg_private.dblink_get_result(text, bool) RETURNS SETOF record
  AS '$libdir/dblink', 'dblink_get_result' LANGUAGE C STRICT PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION pgbg_private.dblink_is_busy(text) RETURNS int4
  AS '$libdir/dblink', 'dblink_is_busy' LANGUAGE C STRICT PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION pgbg_private.dblink_cancel_query(text) RETURNS text
  AS '$libdir/dblink', 'dblink_cancel_query' LANGUAGE C STRICT PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION pgbg_private.dblink_error_message(text) RETURNS text
  AS '$libdir/dblink', 'dblink_error_message' LANGUAGE C STRICT PARALLEL RESTRICTED;
REVOKE ALL ON FUNCTION pgbg_private.dblink_connect(text, text), pgbg_private.dblink_disconnect(text), pgbg_private.dblink_get_connections(),
  pgbg_private.dblink(text, text), pgbg_private.dblink_exec(text, text), pgbg_private.dblink_send_query(text, text),
  pgbg_private.dblink_get_result(text), pgbg_private.dblink_get_result(text, bool), pgbg_private.dblink_is_busy(text),
  pgbg_private.dblink_cancel_query(text), pgbg_private.dblink_error_message(text) FROM PUBLIC;
`;

/** Every object the API creates in its schema, for uninstall. */
const API_TYPES = ['pg_background_handle', 'pg_background_stats', 'pg_background_progress'];
const API_FUNCTION_PATTERN = String.raw`^(pg_background_.*|grant_pg_background_privileges|revoke_pg_background_privileges)$`;
const SETTINGS = ['pg_background.max_workers', 'pg_background.default_queue_size', 'pg_background.worker_timeout'];

export async function migrations(): Promise<{ version: number; file: string }[]> {
  const files = (await readdir(SQL_DIR)).filter((f) => /^\d{4}_.*\.sql$/.test(f)).sort();
  return files.map((file) => ({ version: Number(file.slice(0, 4)), file }));
}

/** The schema the API is installed in, or undefined when it is not installed. */
export async function installedSchema(client: pg.ClientBase): Promise<string | undefined> {
  // Checked first: a query naming a missing table would abort the caller's transaction.
  const present = await client.query<{ ok: boolean }>("SELECT to_regclass('pgbg_private.migrations') IS NOT NULL AS ok");
  if (!present.rows[0]?.ok) return undefined;
  const { rows } = await client.query<{ schema_name: string }>('SELECT schema_name FROM pgbg_private.migrations ORDER BY version LIMIT 1');
  return rows[0]?.schema_name;
}

/** Applies what is missing and records the server's connection string. */
export async function install(client: pg.ClientBase, options: InstallOptions): Promise<InstallReport> {
  const schemaName = options.schema ?? 'public';
  const schema = quoteIdent(schemaName);
  await client.query('BEGIN');
  try {
    // One installer at a time per database: a second one waits, then finds nothing to do.
    await client.query("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgbg install'))");
    const extension = await extensionSchema(client);
    if (extension !== undefined) {
      // Installed with CREATE EXTENSION: upgrade it as such (dblink bound in pgbg_private).
      await client.query(EXTENSION_DBLINK_BINDINGS);
      const applied = await applyMissing(client, extension, EXTENSION_DBLINK_SCHEMA, options.upTo);
      await setServer(client, options.serverConnstr);
      await client.query('COMMIT');
      return { applied, schema: extension };
    }
    const existing = await installedSchema(client);
    if (existing !== undefined && existing !== schemaName) {
      throw new PgbgError(SqlState.invalidParameterValue, `the pgbg SQL API is already installed in schema "${existing}"`, {
        hint: `Run pgbg uninstall first, or install with --schema ${existing}.`,
      });
    }
    await client.query('CREATE EXTENSION IF NOT EXISTS dblink');
    const { rows } = await client.query<{ nspname: string }>(
      "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'dblink'",
    );
    const dblink = quoteIdent(rows[0]!.nspname);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query('CREATE SCHEMA IF NOT EXISTS pgbg_private');
    await client.query('REVOKE ALL ON SCHEMA pgbg_private FROM PUBLIC');
    await client.query('CREATE TABLE IF NOT EXISTS pgbg_private.migrations (version int PRIMARY KEY, schema_name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    const applied = await applyMissing(client, schemaName, dblink, options.upTo);
    await setServer(client, options.serverConnstr);
    await client.query('COMMIT');
    return { applied, schema: schemaName };
  } catch (err) {
    await client.query('ROLLBACK');
    throw err;
  }
}

/** The schema of CREATE EXTENSION pg_background, or undefined when it is not installed that way. */
async function extensionSchema(client: pg.ClientBase): Promise<string | undefined> {
  const { rows } = await client.query<{ nspname: string }>(
    "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_background'",
  );
  return rows[0]?.nspname;
}

/** Applies the migrations a database lacks, in order; returns their versions. */
async function applyMissing(client: pg.ClientBase, schemaName: string, dblinkSchema: string, upTo?: number): Promise<number[]> {
  const applied: number[] = [];
  const done = new Set((await client.query<{ version: number }>('SELECT version FROM pgbg_private.migrations')).rows.map((r) => r.version));
  for (const m of await migrations()) {
    if (done.has(m.version) || (upTo !== undefined && m.version > upTo)) continue;
    const text = (await readFile(path.join(SQL_DIR, m.file), 'utf8')).replaceAll('@schema@', quoteIdent(schemaName)).replaceAll('@dblink@', dblinkSchema);
    await client.query(text);
    await client.query('INSERT INTO pgbg_private.migrations (version, schema_name) VALUES ($1, $2)', [m.version, schemaName]);
    applied.push(m.version);
  }
  return applied;
}

/**
 * Brings an API installed with CREATE EXTENSION pg_background up to this
 * version's migrations (the extension keeps its version, 1.8, so PostgreSQL's
 * own update scripts do not apply). Objects replaced stay extension members;
 * new ones live in pgbg_private or the extension's schema, and uninstall drops
 * them with the extension. Returns the versions applied (empty: none, or no
 * extension here).
 */
export async function upgradeExtension(client: pg.ClientBase): Promise<number[]> {
  await client.query('BEGIN');
  try {
    await client.query("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgbg install'))");
    const schema = await extensionSchema(client);
    if (schema === undefined || (await installedSchema(client)) === undefined) {
      await client.query('ROLLBACK');
      return [];
    }
    await client.query(EXTENSION_DBLINK_BINDINGS);
    const applied = await applyMissing(client, schema, EXTENSION_DBLINK_SCHEMA);
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Points an installed API at the server (a new port or secret); false when the API is not installed here. */
export async function setServer(client: pg.ClientBase, serverConnstr: string): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean; generation: boolean }>(
    `SELECT to_regclass('pgbg_private.server') IS NOT NULL AS ok,
            EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass('pgbg_private.server') AND attname = 'generation') AS generation`,
  );
  if (!rows[0]?.ok) return false;
  await client.query('DELETE FROM pgbg_private.server');
  await client.query('INSERT INTO pgbg_private.server (connstr) VALUES ($1)', [serverConnstr]);
  // A new generation makes caller backends drop connections to an earlier server run (0005).
  if (rows[0].generation) await client.query('UPDATE pgbg_private.server SET generation = $1', [randomUUID()]);
  return true;
}

export interface UninstallOptions {
  /** Also drop pgbackground_role (shared by every database of the cluster). @default false */
  dropRole?: boolean;
}

/**
 * Removes what install created: the API's functions and types, pgbg_private,
 * the setting defaults, and the API schema when install created it and it is
 * empty. dblink stays (other code may use it). An API installed with
 * CREATE EXTENSION is removed with DROP EXTENSION.
 */
export async function uninstall(client: pg.ClientBase, options: UninstallOptions = {}): Promise<{ removed: boolean }> {
  await client.query('BEGIN');
  try {
    const ext = await client.query("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_background'");
    if (ext.rowCount) {
      // CASCADE: objects later migrations added are ours too (see upgradeExtension).
      await client.query('DROP EXTENSION pg_background CASCADE');
    } else {
      const schemaName = await installedSchema(client);
      if (schemaName === undefined) {
        await client.query('ROLLBACK');
        return { removed: false };
      }
      const schema = quoteIdent(schemaName);
      const fns = await client.query<{ sig: string }>(
        `SELECT p.oid::regprocedure::text AS sig FROM pg_catalog.pg_proc p
          WHERE p.pronamespace = $1::regnamespace AND p.proname ~ $2`,
        [schema, API_FUNCTION_PATTERN],
      );
      // Private functions use the API's types: they go first. No CASCADE on the API's own
      // objects, so a user's table or view built on them stops the uninstall instead of losing data.
      await client.query('DROP SCHEMA pgbg_private CASCADE');
      for (const f of fns.rows) await client.query(`DROP FUNCTION IF EXISTS ${f.sig}`);
      for (const t of API_TYPES) await client.query(`DROP TYPE IF EXISTS ${schema}.${quoteIdent(t)}`);
      if (schemaName !== 'public') {
        const left = await client.query('SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = $1::regnamespace UNION ALL SELECT 1 FROM pg_catalog.pg_proc WHERE pronamespace = $1::regnamespace UNION ALL SELECT 1 FROM pg_catalog.pg_type WHERE typnamespace = $1::regnamespace LIMIT 1', [schema]);
        if (!left.rowCount) await client.query(`DROP SCHEMA ${schema}`);
      }
    }
    const db = await client.query<{ d: string }>('SELECT current_database() AS d');
    for (const s of SETTINGS) await client.query(`ALTER DATABASE ${quoteIdent(db.rows[0]!.d)} RESET ${s}`);
    if (options.dropRole) {
      await client.query("DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgbackground_role') THEN DROP ROLE pgbackground_role; END IF; END $$");
    }
    await client.query('COMMIT');
    return { removed: true };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
