/**
 * The SQL API packaged as a real extension, `CREATE EXTENSION pg_background`,
 * for servers whose extension folder we can write (the embedded one): scripts
 * written for the C extension then run unchanged. The script is the same
 * migrations `pgbg install` applies, with dblink's C functions bound privately
 * in pgbg_private (an extension script cannot create the dblink extension), and
 * the server's connection string baked in — so the file is readable only by
 * the PostgreSQL OS user.
 */
import { randomUUID } from 'node:crypto';
import { chmod, chown, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { EXTENSION_DBLINK_BINDINGS, EXTENSION_DBLINK_SCHEMA, migrations, SQL_DIR } from './install.js';

export const EXTENSION_NAME = 'pg_background';
export const EXTENSION_VERSION = '1.8';


/** `upTo` stops at that migration (to test upgrades of an older extension). */
export async function extensionScript(serverConnstr: string, upTo?: number): Promise<string> {
  const parts = [
    `\\echo Use "CREATE EXTENSION ${EXTENSION_NAME}" to load this file. \\quit`,
    'CREATE SCHEMA pgbg_private;',
    'REVOKE ALL ON SCHEMA pgbg_private FROM PUBLIC;',
    EXTENSION_DBLINK_BINDINGS,
  ];
  const versions: number[] = [];
  for (const m of await migrations()) {
    if (upTo !== undefined && m.version > upTo) break;
    const text = await readFile(path.join(SQL_DIR, m.file), 'utf8');
    parts.push(text.replaceAll('@schema@', '@extschema@').replaceAll('@dblink@', EXTENSION_DBLINK_SCHEMA));
    versions.push(m.version);
  }
  // Lets `pgbg install` and `uninstall` see what is there.
  parts.push(
    'CREATE TABLE pgbg_private.migrations (version int PRIMARY KEY, schema_name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());',
    `INSERT INTO pgbg_private.migrations (version, schema_name) SELECT v, (SELECT nspname FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_extension e ON e.extnamespace = n.oid WHERE e.extname = '${EXTENSION_NAME}') FROM unnest(ARRAY[${versions.join(',')}]) v;`,
    `INSERT INTO pgbg_private.server (connstr, generation) VALUES (${literal(serverConnstr)}, ${literal(randomUUID())});`,
  );
  return parts.join('\n') + '\n';
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

/** Writes the control file and script into `dir`; `owner` is the PostgreSQL OS user when it differs from ours. */
export async function writeExtension(
  dir: string, serverConnstr: string, owner?: { uid: number; gid: number }, upTo?: number,
): Promise<void> {
  const control = path.join(dir, `${EXTENSION_NAME}.control`);
  const script = path.join(dir, `${EXTENSION_NAME}--${EXTENSION_VERSION}.sql`);
  await writeFile(control, controlFile(), { mode: 0o644 });
  await writeFile(script, await extensionScript(serverConnstr, upTo), { mode: 0o600 });
  await chmod(script, 0o600);
  if (owner) await chown(script, owner.uid, owner.gid);
}

function literal(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}
