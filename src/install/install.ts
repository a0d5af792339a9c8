/**
 * Installs the SQL API into a database: the private part and one surface, pg_background
 * 1.8 or 2.0 (script.ts), in one transaction, the foreign server that points at the pgbg endpoint, and a
 * secret of its own for the installing role. Re-running is a no-op; an API made by
 * an earlier pgbg (the migrations chain, or CREATE EXTENSION of it) is upgraded in
 * place, and a 1.8 API can be upgraded to 2.0 (never back). Also: uninstall, and pointing an installed API at a (restarted) server.
 *
 * Works for an installer that is not a superuser (managed PostgreSQL: CREATEROLE,
 * owner of the database, dblink created beforehand, USAGE on dblink_fdw).
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { PgbgError, SqlState } from '../protocol/errors.js';
import {
  apiRevision, apiScript, DEFAULT_API_VERSION, EXTENSION_DBLINK_BINDINGS, EXTENSION_DBLINK_GRANTS, EXTENSION_DBLINK_SCHEMA, EXTENSION_FDW, FOREIGN_SERVER,
  GRANT_HELPER, literal, quoteIdent, type ApiVersion,
} from './script.js';

export interface Endpoint {
  /** Address the database reaches the pgbg endpoint at. */
  host: string;
  port: number;
}

export interface InstallOptions {
  /** Schema for the API. @default the one it is installed in, else 'public' */
  schema?: string;
  endpoint: Endpoint;
  /** The surface. @default the installed one, else DEFAULT_API_VERSION; 2.0 over 1.8 upgrades */
  apiVersion?: ApiVersion;
}

export interface InstallReport {
  /** False: it was up to date (only the endpoint was updated). */
  installed: boolean;
  /** Set when an API made by an earlier pgbg was replaced: its migrations chain, or its revision. */
  upgradedFrom?: string;
  schema: string;
  apiVersion: ApiVersion;
}

/** Every object the API creates in its schema, for uninstall. */
const API_TYPES = ['pg_background_handle', 'pg_background_stats', 'pg_background_progress', 'pg_background_progress_info',
  'pg_background_result_info', 'pg_background_error', 'pg_background_run_result', 'pg_background_outcome'];
const API_VIEWS = ['pg_background_activity', 'pg_background_list'];
const API_FUNCTION_PATTERN = String.raw`^(pg_background_.*|grant_pg_background_privileges|revoke_pg_background_privileges)$`;
const SETTINGS = ['pg_background.max_workers', 'pg_background.default_queue_size', 'pg_background.worker_timeout'];

/** The schema the API is installed in, or undefined when it is not installed (by this or an earlier pgbg). */
export async function installedSchema(client: pg.ClientBase): Promise<string | undefined> {
  return (await installState(client)).schema;
}

/** Installs or upgrades the API, and points it at `endpoint`. */
export async function install(client: pg.ClientBase, options: InstallOptions): Promise<InstallReport> {
  await client.query('BEGIN');
  try {
    // One installer at a time per database: a second one waits, then finds nothing to do.
    await client.query("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgbg install'))");
    const state = await installState(client);
    const extension = await extensionSchema(client);
    const wanted = options.schema ?? state.schema ?? 'public';
    const schemaName = extension ?? state.schema ?? wanted;
    if (extension === undefined && state.schema !== undefined && state.schema !== wanted) {
      throw new PgbgError(SqlState.invalidParameterValue, `the pgbg SQL API is already installed in schema "${state.schema}"`, {
        hint: `Run pgbg uninstall first, or install with --schema ${state.schema}.`,
      });
    }
    const version = options.apiVersion ?? state.version ?? DEFAULT_API_VERSION;
    if (state.version === '2.0' && version === '1.8') {
      throw new PgbgError(SqlState.featureNotSupported, 'the pg_background 2.0 API is installed here, and 2.0 cannot be turned back into 1.8', {
        hint: 'Run pgbg uninstall first, then install with --api-version 1.8.',
      });
    }
    if (extension !== undefined && state.version !== undefined && version !== state.version) {
      throw new PgbgError(SqlState.featureNotSupported, `the SQL API was made by CREATE EXTENSION pg_background (version ${state.version})`, {
        hint: `Run: ALTER EXTENSION pg_background UPDATE TO '${version}';`,
      });
    }
    if (state.revision === (await apiRevision(version))) {
      await setServer(client, options.endpoint);
      await client.query('COMMIT');
      return { installed: false, schema: schemaName, apiVersion: version };
    }
    const upgrading = state.legacy || state.revision !== undefined;
    const hadAccess = state.legacy ? await rolesWithAccess(client) : [];
    // An earlier revision's keys survive its replacement: the roles keep their secrets.
    if (state.revision !== undefined) await client.query('CREATE TEMP TABLE pgbg_kept_keys ON COMMIT DROP AS SELECT * FROM pgbg_private.role_keys');
    if (upgrading) await dropPrivateObjects(client, extension !== undefined);
    if (state.version !== undefined && state.version !== version) await dropSurface(client, quoteIdent(schemaName));
    if (extension !== undefined) {
      await client.query(EXTENSION_DBLINK_BINDINGS);
      await client.query(await apiScript({ schema: quoteIdent(schemaName), dblink: EXTENSION_DBLINK_SCHEMA, version }));
      await client.query(EXTENSION_DBLINK_GRANTS);
      await createForeignServer(client, EXTENSION_FDW, options.endpoint);
    } else {
      const dblink = await dblinkSchema(client);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schemaName)}`);
      await client.query('CREATE SCHEMA IF NOT EXISTS pgbg_private');
      await client.query('REVOKE ALL ON SCHEMA pgbg_private FROM PUBLIC');
      await client.query(await apiScript({ schema: quoteIdent(schemaName), dblink: quoteIdent(dblink), version }));
      await createForeignServer(client, 'dblink_fdw', options.endpoint);
    }
    await recordInstall(client, schemaName, version);
    if (state.revision !== undefined) await client.query('INSERT INTO pgbg_private.role_keys SELECT * FROM pg_temp.pgbg_kept_keys');
    if (extension !== undefined) await adoptIntoExtension(client);
    await storeSettingDefaults(client);
    await grantAccess(client, `${quoteIdent(schemaName)}.${GRANT_HELPER[version]}`, hadAccess);
    await setServer(client, options.endpoint);
    await client.query('COMMIT');
    const upgradedFrom = state.legacy ? { upgradedFrom: 'migrations' as const } : state.revision !== undefined ? { upgradedFrom: `${state.version} ${state.revision}` } : {};
    return { installed: true, ...upgradedFrom, schema: schemaName, apiVersion: version };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** What is installed: the schema, the surface and its revision, and whether it is the earlier migrations chain (1.8). */
async function installState(client: pg.ClientBase): Promise<{ schema?: string; version?: ApiVersion; revision?: string; legacy: boolean }> {
  // Checked first: a query naming a missing table would abort the caller's transaction.
  const { rows } = await client.query<{ current: boolean; legacy: boolean }>(
    "SELECT to_regclass('pgbg_private.install') IS NOT NULL AS current, to_regclass('pgbg_private.migrations') IS NOT NULL AS legacy",
  );
  if (rows[0]?.current) {
    // An install table without api_version is an earlier pgbg's, which served 1.8 only.
    const r = (await client.query<{ schema_name: string; revision: string; api_version?: ApiVersion }>('SELECT * FROM pgbg_private.install')).rows[0];
    return { ...(r ? { schema: r.schema_name, revision: r.revision, version: r.api_version ?? '1.8' } : {}), legacy: false };
  }
  if (!rows[0]?.legacy) return { legacy: false };
  const r = (await client.query<{ s: string }>('SELECT schema_name AS s FROM pgbg_private.migrations ORDER BY version LIMIT 1')).rows[0];
  return { ...(r ? { schema: r.s, version: '1.8' as const } : {}), legacy: true };
}

export const INSTALL_TABLE = 'CREATE TABLE pgbg_private.install (schema_name text NOT NULL, api_version text NOT NULL, revision text NOT NULL, installed_at timestamptz NOT NULL DEFAULT now())';

async function recordInstall(client: pg.ClientBase, schemaName: string, version: ApiVersion): Promise<void> {
  await client.query(INSTALL_TABLE);
  await client.query('INSERT INTO pgbg_private.install (schema_name, api_version, revision) VALUES ($1, $2, $3)', [schemaName, version, await apiRevision(version)]);
}

/**
 * The public objects of the other surface go (1.8's before 2.0 is installed): its
 * functions, views and types, but the handle type, which callers' tables may hold.
 */
async function dropSurface(client: pg.ClientBase, schema: string): Promise<void> {
  for (const v of API_VIEWS) await client.query(`DROP VIEW IF EXISTS ${schema}.${quoteIdent(v)}`);
  for (const sig of await apiFunctions(client, schema)) await client.query(`DROP FUNCTION IF EXISTS ${sig}`);
  for (const t of API_TYPES.slice(1)) await client.query(`DROP TYPE IF EXISTS ${schema}.${quoteIdent(t)}`);
}

async function apiFunctions(client: pg.ClientBase, schema: string): Promise<string[]> {
  const { rows } = await client.query<{ sig: string }>(
    'SELECT p.oid::regprocedure::text AS sig FROM pg_catalog.pg_proc p WHERE p.pronamespace = $1::regnamespace AND p.proname ~ $2',
    [schema, API_FUNCTION_PATTERN],
  );
  return rows.map((r) => r.sig);
}

/** The schema of CREATE EXTENSION pg_background, or undefined when it is not installed that way. */
async function extensionSchema(client: pg.ClientBase): Promise<string | undefined> {
  const { rows } = await client.query<{ nspname: string }>(
    "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_background'",
  );
  return rows[0]?.nspname;
}

async function dblinkSchema(client: pg.ClientBase): Promise<string> {
  const find = () => client.query<{ nspname: string }>(
    "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'dblink'",
  );
  let { rows } = await find();
  if (rows.length === 0) {
    await client.query('SAVEPOINT pgbg_dblink');
    try {
      await client.query('CREATE EXTENSION dblink');
      await client.query('RELEASE SAVEPOINT pgbg_dblink');
    } catch (err) {
      await client.query('ROLLBACK TO SAVEPOINT pgbg_dblink');
      throw new PgbgError(SqlState.insufficientPrivilege, 'the pgbg SQL API needs the dblink extension, and this role cannot create it', {
        detail: (err as Error).message,
        hint: 'Ask a superuser (or your provider\'s admin role) to run: CREATE EXTENSION dblink;',
      });
    }
    ({ rows } = await find());
  }
  return rows[0]!.nspname;
}

async function createForeignServer(client: pg.ClientBase, fdw: string, endpoint: Endpoint): Promise<void> {
  await client.query('SAVEPOINT pgbg_server');
  try {
    const db = (await client.query<{ d: string }>('SELECT current_database() AS d')).rows[0]!.d;
    await client.query(
      `CREATE SERVER IF NOT EXISTS ${FOREIGN_SERVER} FOREIGN DATA WRAPPER ${quoteIdent(fdw)} OPTIONS (host ${literal(endpoint.host)}, port ${literal(String(endpoint.port))}, dbname ${literal(db)})`,
    );
    await client.query('RELEASE SAVEPOINT pgbg_server');
  } catch (err) {
    await client.query('ROLLBACK TO SAVEPOINT pgbg_server');
    const code = (err as { code?: string }).code;
    if (code === SqlState.insufficientPrivilege) {
      throw new PgbgError(SqlState.insufficientPrivilege, `this role may not create a foreign server with ${fdw}`, {
        detail: (err as Error).message,
        hint: `Ask a superuser (or your provider's admin role) to run: GRANT USAGE ON FOREIGN DATA WRAPPER ${fdw} TO ${'<this role>'};`,
      });
    }
    throw err;
  }
  await client.query(`GRANT USAGE ON FOREIGN SERVER ${FOREIGN_SERVER} TO pgbackground_role`);
}

/**
 * An earlier install's private objects go (its functions and tables; the schema, dblink's bound
 * C functions and the extension's foreign-data wrapper stay, or the user mappings would go with
 * them). For CREATE EXTENSION, each leaves the extension first.
 */
async function dropPrivateObjects(client: pg.ClientBase, extension: boolean): Promise<void> {
  const objects = await client.query<{ what: string; drop: string; member: boolean }>(
    `SELECT pg_catalog.pg_describe_object(o.classid, o.objid, 0) AS what, o.drop,
            EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = o.classid AND d.objid = o.objid AND d.deptype = 'e') AS member
       FROM (SELECT 'pg_catalog.pg_proc'::regclass AS classid, p.oid AS objid, 'DROP FUNCTION ' || p.oid::regprocedure::text AS drop
               FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'pgbg_private'::regnamespace
                AND p.prolang <> (SELECT oid FROM pg_catalog.pg_language WHERE lanname = 'c')
             UNION ALL
             SELECT 'pg_catalog.pg_class'::regclass, c.oid, 'DROP TABLE ' || c.oid::regclass::text
               FROM pg_catalog.pg_class c WHERE c.relnamespace = 'pgbg_private'::regnamespace AND c.relkind = 'r') o`,
  );
  for (const o of objects.rows) {
    if (extension && o.member) await client.query(`ALTER EXTENSION pg_background DROP ${o.what}`);
    await client.query(o.drop);
  }
}

/** Objects of the API made outside an extension script join the extension (so DROP EXTENSION takes them). */
async function adoptIntoExtension(client: pg.ClientBase): Promise<void> {
  const loose = await client.query<{ what: string }>(
    `SELECT pg_catalog.pg_describe_object(classid, objid, 0) AS what FROM (
       SELECT 'pg_catalog.pg_namespace'::regclass AS classid, 'pgbg_private'::regnamespace::oid AS objid
       UNION ALL SELECT 'pg_catalog.pg_proc'::regclass, oid FROM pg_catalog.pg_proc WHERE pronamespace = 'pgbg_private'::regnamespace
       UNION ALL SELECT 'pg_catalog.pg_class'::regclass, oid FROM pg_catalog.pg_class WHERE relnamespace = 'pgbg_private'::regnamespace AND relkind IN ('r', 'S')
       UNION ALL SELECT 'pg_catalog.pg_foreign_data_wrapper'::regclass, oid FROM pg_catalog.pg_foreign_data_wrapper WHERE fdwname = $1
       UNION ALL SELECT 'pg_catalog.pg_foreign_server'::regclass, oid FROM pg_catalog.pg_foreign_server WHERE srvname = $2
     ) o WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = o.classid AND d.objid = o.objid AND d.deptype = 'e')`,
    [EXTENSION_FDW, FOREIGN_SERVER],
  );
  // pg_describe_object names these two otherwise than ALTER EXTENSION does.
  const statement = (what: string) => what.replace(/^foreign-data wrapper /, 'FOREIGN DATA WRAPPER ').replace(/^server /, 'SERVER ');
  for (const m of loose.rows) await client.query(`ALTER EXTENSION pg_background ADD ${statement(m.what)}`);
}

/** Roles that could use an earlier install: they keep access through the upgrade. */
async function rolesWithAccess(client: pg.ClientBase): Promise<string[]> {
  // Members through other roles too: they could launch before.
  const { rows } = await client.query<{ rolname: string }>(
    `SELECT r.rolname FROM pg_catalog.pg_roles r
      WHERE r.rolname <> 'pgbackground_role' AND NOT r.rolsuper AND r.rolname !~ '^pg_'
        AND pg_catalog.pg_has_role(r.oid, 'pgbackground_role', 'MEMBER') ORDER BY 1`,
  );
  return rows.map((r) => r.rolname);
}

/** Secrets for the installing role and for `roles` (an upgrade's earlier members). */
async function grantAccess(client: pg.ClientBase, fn: string, roles: string[]): Promise<void> {
  const me = (await client.query<{ u: string }>('SELECT current_user AS u')).rows[0]!.u;
  for (const role of [me, ...roles.filter((r) => r !== me)]) {
    const ok = (await client.query<{ ok: boolean }>(`SELECT ${fn}($1) AS ok`, [role])).rows[0]?.ok;
    if (!ok) throw new PgbgError(SqlState.insufficientPrivilege, `could not give role "${role}" access to the pgbg SQL API`);
  }
}

/**
 * SHOW answers the defaults in a fresh session. Storing a default for a setting
 * PostgreSQL does not know needs a superuser (or SET privilege on it); where it
 * cannot be stored, the API treats an unset setting as its default.
 */
async function storeSettingDefaults(client: pg.ClientBase): Promise<void> {
  const db = quoteIdent((await client.query<{ d: string }>('SELECT current_database() AS d')).rows[0]!.d);
  const defaults: [string, string][] = [['pg_background.max_workers', '16'], ['pg_background.default_queue_size', "'64kB'"], ['pg_background.worker_timeout', '0']];
  await client.query('SAVEPOINT pgbg_settings');
  try {
    for (const [name, value] of defaults) await client.query(`ALTER DATABASE ${db} SET ${name} = ${value}`);
    await client.query('RELEASE SAVEPOINT pgbg_settings');
  } catch {
    await client.query('ROLLBACK TO SAVEPOINT pgbg_settings');
    return;
  }
  // The database's defaults reach new sessions; this one answers them at once too (as the C extension's does).
  for (const [name, value] of defaults) await client.query('SELECT pg_catalog.set_config($1, $2, false)', [name, value.replaceAll("'", '')]);
}

/**
 * Points an installed API at the endpoint (a new address, or a new server run:
 * callers' connections to an earlier run are replaced). False when the API is
 * not installed here (or only an earlier pgbg's is, which install upgrades).
 */
export async function setServer(client: pg.ClientBase, endpoint: Endpoint): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>(
    `SELECT to_regclass('pgbg_private.install') IS NOT NULL AND EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server WHERE srvname = $1) AS ok`,
    [FOREIGN_SERVER],
  );
  if (!rows[0]?.ok) return false;
  const db = (await client.query<{ d: string }>('SELECT current_database() AS d')).rows[0]!.d;
  await client.query(
    `ALTER SERVER ${FOREIGN_SERVER} OPTIONS (SET host ${literal(endpoint.host)}, SET port ${literal(String(endpoint.port))}, SET dbname ${literal(db)})`,
  );
  await client.query('UPDATE pgbg_private.server SET generation = $1', [randomUUID()]);
  return true;
}

export interface UninstallOptions {
  /** Also drop pgbackground_role (shared by every database of the cluster). @default false */
  dropRole?: boolean;
}

/**
 * Removes what install created: the API's functions and types, pgbg_private, the
 * foreign server with its user mappings, the setting defaults, and the API schema
 * when install created it and it is empty. dblink stays (other code may use it).
 * An API installed with CREATE EXTENSION is removed with DROP EXTENSION.
 */
export async function uninstall(client: pg.ClientBase, options: UninstallOptions = {}): Promise<{ removed: boolean }> {
  await client.query('BEGIN');
  try {
    const ext = await client.query("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_background'");
    if (ext.rowCount) {
      // CASCADE: the user mappings depend on the extension's foreign server.
      await client.query('DROP EXTENSION pg_background CASCADE');
    } else {
      const schemaName = await installedSchema(client);
      if (schemaName === undefined) {
        await client.query('ROLLBACK');
        return { removed: false };
      }
      const schema = quoteIdent(schemaName);
      const fns = await apiFunctions(client, schema);
      // Private functions use the API's types: they go first. No CASCADE on the API's own
      // objects, so a user's table or view built on them stops the uninstall instead of losing data.
      await client.query('DROP SCHEMA pgbg_private CASCADE');
      await client.query(`DROP SERVER IF EXISTS ${FOREIGN_SERVER} CASCADE`);
      for (const v of API_VIEWS) await client.query(`DROP VIEW IF EXISTS ${schema}.${quoteIdent(v)}`);
      for (const sig of fns) await client.query(`DROP FUNCTION IF EXISTS ${sig}`);
      for (const t of API_TYPES) await client.query(`DROP TYPE IF EXISTS ${schema}.${quoteIdent(t)}`);
      if (schemaName !== 'public') {
        const left = await client.query('SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = $1::regnamespace UNION ALL SELECT 1 FROM pg_catalog.pg_proc WHERE pronamespace = $1::regnamespace UNION ALL SELECT 1 FROM pg_catalog.pg_type WHERE typnamespace = $1::regnamespace LIMIT 1', [schema]);
        if (!left.rowCount) await client.query(`DROP SCHEMA ${schema}`);
      }
    }
    const db = await client.query<{ d: string }>('SELECT current_database() AS d');
    await client.query('SAVEPOINT pgbg_settings');
    try {
      for (const s of SETTINGS) await client.query(`ALTER DATABASE ${quoteIdent(db.rows[0]!.d)} RESET ${s}`);
      await client.query('RELEASE SAVEPOINT pgbg_settings');
    } catch {
      await client.query('ROLLBACK TO SAVEPOINT pgbg_settings');
    }
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
