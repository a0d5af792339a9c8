/**
 * The SQL API packaged as a real extension, `CREATE EXTENSION pg_background`,
 * for servers whose extension folder we can write (the embedded one): scripts
 * written for the C extension then run unchanged. The script is the baseline
 * `pgbg install` runs, with dblink's C functions bound privately in pgbg_private
 * (an extension script cannot create the dblink extension). It holds no secret:
 * the role that creates the extension gets a secret of its own, in its user mapping.
 */
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  apiRevision, apiScript, EXTENSION_DBLINK_BINDINGS, EXTENSION_DBLINK_GRANTS, EXTENSION_DBLINK_SCHEMA, EXTENSION_FDW, FOREIGN_SERVER, literal, type Endpoint,
} from './install.js';

export const EXTENSION_NAME = 'pg_background';
export const EXTENSION_VERSION = '1.8';

export async function extensionScript(endpoint: Endpoint): Promise<string> {
  return [
    `\\echo Use "CREATE EXTENSION ${EXTENSION_NAME}" to load this file. \\quit`,
    'CREATE SCHEMA pgbg_private;',
    'REVOKE ALL ON SCHEMA pgbg_private FROM PUBLIC;',
    EXTENSION_DBLINK_BINDINGS,
    await apiScript({ schema: '@extschema@', dblink: EXTENSION_DBLINK_SCHEMA }),
    EXTENSION_DBLINK_GRANTS,
    `DO $$ BEGIN
  EXECUTE pg_catalog.format('CREATE SERVER ${FOREIGN_SERVER} FOREIGN DATA WRAPPER ${EXTENSION_FDW} OPTIONS (host %L, port %L, dbname %L)',
    ${literal(endpoint.host)}, ${literal(String(endpoint.port))}, pg_catalog.current_database());
  EXECUTE pg_catalog.format('ALTER DATABASE %I SET pg_background.max_workers = 16', pg_catalog.current_database());
  EXECUTE pg_catalog.format('ALTER DATABASE %I SET pg_background.default_queue_size = %L', pg_catalog.current_database(), '64kB');
  EXECUTE pg_catalog.format('ALTER DATABASE %I SET pg_background.worker_timeout = 0', pg_catalog.current_database());
END $$;`,
    // ALTER DATABASE reaches new sessions; the one creating the extension answers the defaults at once too.
    "SELECT pg_catalog.set_config('pg_background.max_workers', '16', false), pg_catalog.set_config('pg_background.default_queue_size', '64kB', false),\n  pg_catalog.set_config('pg_background.worker_timeout', '0', false);",
    `GRANT USAGE ON FOREIGN SERVER ${FOREIGN_SERVER} TO pgbackground_role;`,
    // Lets `pgbg install` and `uninstall` see what is there.
    'CREATE TABLE pgbg_private.install (schema_name text NOT NULL, revision text NOT NULL, installed_at timestamptz NOT NULL DEFAULT now());',
    `INSERT INTO pgbg_private.install (schema_name, revision) VALUES ('@extschema@', ${literal(await apiRevision())});`,
    'SELECT @extschema@.grant_pg_background_privileges(CURRENT_USER::pg_catalog.text);',
  ].join('\n') + '\n';
}

export function controlFile(): string {
  return [
    "comment = 'pg_background SQL API, served by the pgbg server'",
    `default_version = '${EXTENSION_VERSION}'`,
    'relocatable = false',
    'superuser = true',
    '',
  ].join('\n');
}

/** Writes the control file and script into `dir` (nothing secret: both readable). */
export async function writeExtension(dir: string, endpoint: Endpoint): Promise<void> {
  const control = path.join(dir, `${EXTENSION_NAME}.control`);
  const script = path.join(dir, `${EXTENSION_NAME}--${EXTENSION_VERSION}.sql`);
  await writeFile(control, controlFile(), { mode: 0o644 });
  await writeFile(script, await extensionScript(endpoint), { mode: 0o644 });
  await chmod(script, 0o644);
}
