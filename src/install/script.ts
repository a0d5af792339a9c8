/**
 * The SQL install puts in a database: the private part (src/install/sql/private.sql)
 * and one of the two surfaces it serves, pg_background 1.8 or 2.0
 * (api-<version>.sql), with their placeholders filled in; and what that text is
 * (its revision).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PgbgError, SqlState } from '../protocol/errors.js';
import { CARRIED_SETTINGS } from '../sql/carried-settings.js';
import { RERAISE_SQL, raiseWithPresentFields } from './reraise.js';

/** The pg_background SQL surfaces pgbg serves. */
export const API_VERSIONS = ['1.8', '2.0'] as const;
export type ApiVersion = (typeof API_VERSIONS)[number];
/** What a fresh install, CREATE EXTENSION and `npm start` give. */
export const DEFAULT_API_VERSION: ApiVersion = '2.0';

export function apiVersion(text: string): ApiVersion {
  const v = API_VERSIONS.find((x) => x === text);
  if (!v) throw new PgbgError(SqlState.invalidParameterValue, `unknown pg_background API version "${text}"`, { hint: `Choose one of: ${API_VERSIONS.join(', ')}.` });
  return v;
}

/** Each surface's privilege helper (1.8 and 2.0 name it differently). */
export const GRANT_HELPER: Record<ApiVersion, string> = {
  '1.8': 'grant_pg_background_privileges',
  '2.0': 'pg_background_grant_privileges',
};

export const SQL_DIR = path.join(import.meta.dirname, 'sql');
/** The endpoint's foreign server; its user mappings hold each role's secret. */
export const FOREIGN_SERVER = 'pgbg';
/** Where CREATE EXTENSION pg_background binds dblink's C functions (it cannot create the dblink extension). */
export const EXTENSION_DBLINK_SCHEMA = 'pgbg_private';
/** The foreign-data wrapper CREATE EXTENSION makes for the endpoint (with dblink's own validator). */
export const EXTENSION_FDW = 'pgbg_fdw';

/**
 * dblink's C functions the SQL API calls, bound privately in pgbg_private for an
 * API made with CREATE EXTENSION, and a foreign-data wrapper validated as
 * dblink_fdw is (dblink reads the server's and mapping's options whatever the wrapper).
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
CREATE OR REPLACE FUNCTION pgbg_private.dblink_fdw_validator(text[], oid) RETURNS void
  AS '$libdir/dblink', 'dblink_fdw_validator' LANGUAGE C STRICT PARALLEL SAFE;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_data_wrapper WHERE fdwname = '${EXTENSION_FDW}') THEN
    CREATE FOREIGN DATA WRAPPER ${EXTENSION_FDW} VALIDATOR pgbg_private.dblink_fdw_validator;
  END IF;
END $$;
`;
const DBLINK_FUNCTIONS = [
  'dblink_connect(text, text)', 'dblink_disconnect(text)', 'dblink_get_connections()', 'dblink(text, text)', 'dblink_exec(text, text)',
  'dblink_send_query(text, text)', 'dblink_get_result(text)', 'dblink_get_result(text, bool)', 'dblink_is_busy(text)',
  'dblink_cancel_query(text)', 'dblink_error_message(text)',
];

/**
 * After the API script (which revokes everything in pgbg_private from PUBLIC): the
 * wrappers run as their callers, so the members call the bound dblink functions.
 */
export const EXTENSION_DBLINK_GRANTS = `GRANT EXECUTE ON FUNCTION ${DBLINK_FUNCTIONS.map((f) => `pgbg_private.${f}`).join(', ')} TO pgbackground_role;`;

export interface ScriptOptions {
  /** The API's schema as SQL (quoted identifier, or @extschema@). */
  schema: string;
  /** The schema of dblink's functions, quoted. */
  dblink: string;
  version: ApiVersion;
}

/** The private part and the surface, with their placeholders filled in. */
export async function apiScript(options: ScriptOptions): Promise<string> {
  const parts = await Promise.all(['private.sql', `api-${options.version}.sql`].map((f) => readFile(path.join(SQL_DIR, f), 'utf8')));
  const names = `ARRAY[${CARRIED_SETTINGS.map(literal).join(', ')}]::pg_catalog.text[]`;
  const values = `ARRAY[${CARRIED_SETTINGS.map((n) => `pg_catalog.current_setting(${literal(n)}, true)`).join(', ')}]`;
  return parts.join('\n')
    .replaceAll('@schema@', options.schema)
    .replaceAll('@dblink@', options.dblink)
    .replaceAll('@grant_helper@', GRANT_HELPER[options.version])
    .replaceAll('@api_version@', options.version)
    .replaceAll('@carried_names@', names)
    .replaceAll('@carried_values@', values)
    .replaceAll('@reraise@', RERAISE_SQL)
    .replaceAll('@raise_notice@', raiseNotice('NOTICE'))
    .replaceAll('@raise_warning@', raiseNotice('WARNING'));
}

/** A worker's notice raised in the caller: its message, and its detail and hint where it has them. */
function raiseNotice(level: 'NOTICE' | 'WARNING'): string {
  return raiseWithPresentFields(level, [{ option: 'MESSAGE', value: 'n.message' }],
    [[{ option: 'DETAIL', value: 'n.detail' }], [{ option: 'HINT', value: 'n.hint' }]]);
}

/**
 * What an installed API is: a hash of everything install puts in the database for
 * that surface (the scripts, the settings list, dblink's bindings). Any change makes
 * a newer pgbg replace an install in place (keeping the roles' secrets).
 */
const revisions = new Map<ApiVersion, Promise<string>>();
export function apiRevision(version: ApiVersion): Promise<string> {
  let revision = revisions.get(version);
  if (!revision) {
    revision = apiScript({ schema: '@schema@', dblink: '@dblink@', version }).then((text) =>
      createHash('sha256').update(text).update(EXTENSION_DBLINK_BINDINGS).update(EXTENSION_DBLINK_GRANTS).digest('hex').slice(0, 16));
    revisions.set(version, revision);
  }
  return revision;
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function literal(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}
