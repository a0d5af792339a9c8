/**
 * The SQL API packaged as a real extension, `CREATE EXTENSION pg_background`,
 * for servers whose extension folder we can write (the embedded one): scripts
 * written for the C extension then run unchanged. Two versions, as the SQL
 * surfaces pgbg serves: 2.0 (the default) and 1.8, with an update script from
 * 1.8 to 2.0. Each script is what `pgbg install` runs, with dblink's C functions
 * bound privately in pgbg_private (an extension script cannot create the dblink
 * extension). None holds a secret: the role that creates the extension gets a
 * secret of its own, in its user mapping.
 */
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { INSTALL_TABLE, type Endpoint } from './install.js';
import {
  API_VERSIONS, apiRevision, apiScript, DEFAULT_API_VERSION, EXTENSION_DBLINK_BINDINGS, EXTENSION_DBLINK_GRANTS, EXTENSION_DBLINK_SCHEMA, EXTENSION_FDW,
  FOREIGN_SERVER, GRANT_HELPER, literal, type ApiVersion,
} from './script.js';

export const EXTENSION_NAME = 'pg_background';

const SETTING_DEFAULTS = `DO $$ BEGIN
  EXECUTE pg_catalog.format('ALTER DATABASE %I SET pg_background.max_workers = 16', pg_catalog.current_database());
  EXECUTE pg_catalog.format('ALTER DATABASE %I SET pg_background.default_queue_size = %L', pg_catalog.current_database(), '64kB');
  EXECUTE pg_catalog.format('ALTER DATABASE %I SET pg_background.worker_timeout = 0', pg_catalog.current_database());
END $$;
-- ALTER DATABASE reaches new sessions; the one running this script answers the defaults at once too.
SELECT pg_catalog.set_config('pg_background.max_workers', '16', false), pg_catalog.set_config('pg_background.default_queue_size', '64kB', false),
  pg_catalog.set_config('pg_background.worker_timeout', '0', false);`;

async function surface(version: ApiVersion): Promise<string> {
  return [
    EXTENSION_DBLINK_BINDINGS,
    await apiScript({ schema: '@extschema@', dblink: EXTENSION_DBLINK_SCHEMA, version }),
    EXTENSION_DBLINK_GRANTS,
    SETTING_DEFAULTS,
  ].join('\n');
}

export async function extensionScript(endpoint: Endpoint, version: ApiVersion = DEFAULT_API_VERSION): Promise<string> {
  return [
    `\\echo Use "CREATE EXTENSION ${EXTENSION_NAME}" to load this file. \\quit`,
    'CREATE SCHEMA pgbg_private;',
    'REVOKE ALL ON SCHEMA pgbg_private FROM PUBLIC;',
    await surface(version),
    `DO $$ BEGIN
  EXECUTE pg_catalog.format('CREATE SERVER ${FOREIGN_SERVER} FOREIGN DATA WRAPPER ${EXTENSION_FDW} OPTIONS (host %L, port %L, dbname %L)',
    ${literal(endpoint.host)}, ${literal(String(endpoint.port))}, pg_catalog.current_database());
END $$;`,
    `GRANT USAGE ON FOREIGN SERVER ${FOREIGN_SERVER} TO pgbackground_role;`,
    // Lets `pgbg install` and `uninstall` see what is there.
    `${INSTALL_TABLE};`,
    `INSERT INTO pgbg_private.install (schema_name, api_version, revision) VALUES ('@extschema@', '${version}', ${literal(await apiRevision(version))});`,
    `SELECT @extschema@.${GRANT_HELPER[version]}(CURRENT_USER::pg_catalog.text);`,
  ].join('\n') + '\n';
}

/**
 * 1.8 to 2.0 in place, as a fresh 2.0 install would be: 1.8's functions and
 * types go (but the handle type, which callers' tables may hold), the private
 * functions are made anew; the foreign server, the roles' user mappings and
 * their keys stay, so every role keeps its access.
 */
export async function updateScript(): Promise<string> {
  return [
    `\\echo Use "ALTER EXTENSION ${EXTENSION_NAME} UPDATE TO '2.0'" to load this file. \\quit`,
    `DO $$
DECLARE
  f pg_catalog.regprocedure;
BEGIN
  FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
            WHERE (p.pronamespace = '@extschema@'::pg_catalog.regnamespace AND p.proname ~ '^(pg_background_.*|grant_pg_background_privileges|revoke_pg_background_privileges)$')
               OR (p.pronamespace = 'pgbg_private'::pg_catalog.regnamespace AND p.prolang <> (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname = 'c')) LOOP
    EXECUTE pg_catalog.format('DROP FUNCTION %s', f);
  END LOOP;
END $$;`,
    'DROP TYPE @extschema@.pg_background_stats;',
    'DROP TYPE @extschema@.pg_background_progress;',
    await surface('2.0'),
    'ALTER TABLE pgbg_private.install ADD COLUMN IF NOT EXISTS api_version pg_catalog.text;',
    `UPDATE pgbg_private.install SET api_version = '2.0', revision = ${literal(await apiRevision('2.0'))}, installed_at = pg_catalog.now();`,
  ].join('\n') + '\n';
}

export function controlFile(): string {
  return [
    "comment = 'pg_background SQL API, served by the pgbg server'",
    `default_version = '${DEFAULT_API_VERSION}'`,
    'relocatable = false',
    'superuser = true',
    '',
  ].join('\n');
}

/** Writes the control file and the scripts into `dir` (nothing secret: all readable). */
export async function writeExtension(dir: string, endpoint: Endpoint): Promise<void> {
  const files: [string, string][] = [[`${EXTENSION_NAME}.control`, controlFile()]];
  for (const v of API_VERSIONS) files.push([`${EXTENSION_NAME}--${v}.sql`, await extensionScript(endpoint, v)]);
  files.push([`${EXTENSION_NAME}--1.8--2.0.sql`, await updateScript()]);
  for (const [name, text] of files) {
    const file = path.join(dir, name);
    await writeFile(file, text, { mode: 0o644 });
    await chmod(file, 0o644);
  }
}
