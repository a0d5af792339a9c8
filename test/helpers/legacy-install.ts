/**
 * The SQL API as pgbg made it before the one baseline: the thirteen migrations
 * (test/fixtures/legacy-sql), one shared secret in pgbg_private.server. Tests use
 * it to prove that install and `pgbg serve` upgrade such an API in place, and that
 * the attacks it allowed fail once upgraded.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';

const LEGACY_DIR = path.resolve(import.meta.dirname, '../fixtures/legacy-sql');

async function files(upTo?: number): Promise<{ version: number; text: string }[]> {
  const names = (await readdir(LEGACY_DIR)).filter((f) => /^\d{4}_.*\.sql$/.test(f)).sort();
  const out = [];
  for (const f of names) {
    const version = Number(f.slice(0, 4));
    if (upTo !== undefined && version > upTo) break;
    out.push({ version, text: await readFile(path.join(LEGACY_DIR, f), 'utf8') });
  }
  return out;
}

/** The legacy install into schema `public`, pointing at `connstr` (host, port, user pgbg, the secret). */
export async function legacyInstall(client: pg.ClientBase, connstr: string, upTo?: number): Promise<number[]> {
  await client.query('CREATE EXTENSION IF NOT EXISTS dblink');
  const dblink = (await client.query<{ n: string }>("SELECT n.nspname AS n FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'dblink'")).rows[0]!.n;
  await client.query('CREATE SCHEMA pgbg_private');
  await client.query('CREATE TABLE pgbg_private.migrations (version int PRIMARY KEY, schema_name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
  const applied = [];
  for (const m of await files(upTo)) {
    await client.query(m.text.replaceAll('@schema@', '"public"').replaceAll('@dblink@', `"${dblink}"`));
    await client.query("INSERT INTO pgbg_private.migrations (version, schema_name) VALUES ($1, 'public')", [m.version]);
    applied.push(m.version);
  }
  await client.query('INSERT INTO pgbg_private.server (connstr) VALUES ($1)', [connstr]);
  return applied;
}

const LEGACY_BINDINGS = ['dblink_connect(text, text)', 'dblink_disconnect(text)', 'dblink_get_connections()', 'dblink(text, text)',
  'dblink_exec(text, text)', 'dblink_send_query(text, text)', 'dblink_get_result(text)', 'dblink_get_result(text, bool)',
  'dblink_is_busy(text)', 'dblink_cancel_query(text)', 'dblink_error_message(text)'];

/** The legacy `CREATE EXTENSION pg_background` (1.8) files in `dir`, with the secret baked into the script. */
export async function writeLegacyExtension(dir: string, connstr: string): Promise<void> {
  const bind = (sig: string) => {
    const name = sig.slice(0, sig.indexOf('('));
    const ret = { dblink_get_connections: 'text[]', dblink: 'SETOF record', dblink_get_result: 'SETOF record', dblink_send_query: 'int4', dblink_is_busy: 'int4' }[name] ?? 'text';
    const symbol = name === 'dblink' ? 'dblink_record' : name;
    return `CREATE FUNCTION pgbg_private.${sig} RETURNS ${ret} AS '$libdir/dblink', '${symbol}' LANGUAGE C${name === 'dblink_get_connections' ? '' : ' STRICT'};`;
  };
  const parts = ['\\echo Use "CREATE EXTENSION pg_background" to load this file. \\quit', 'CREATE SCHEMA pgbg_private;', ...LEGACY_BINDINGS.map(bind)];
  const versions = [];
  for (const m of await files()) {
    parts.push(m.text.replaceAll('@schema@', '@extschema@').replaceAll('@dblink@', 'pgbg_private'));
    versions.push(m.version);
  }
  parts.push(
    'CREATE TABLE pgbg_private.migrations (version int PRIMARY KEY, schema_name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());',
    `INSERT INTO pgbg_private.migrations (version, schema_name) SELECT v, '@extschema@' FROM unnest(ARRAY[${versions.join(',')}]) v;`,
    `INSERT INTO pgbg_private.server (connstr, generation) VALUES ('${connstr.replaceAll("'", "''")}', 'legacy');`,
  );
  await writeFile(path.join(dir, 'pg_background.control'), "comment = 'pg_background'\ndefault_version = '1.8'\nrelocatable = false\nsuperuser = true\n", { mode: 0o644 });
  await writeFile(path.join(dir, 'pg_background--1.8.sql'), parts.join('\n') + '\n', { mode: 0o644 });
}
