/**
 * Where the server finds a password for a worker login. A worker always logs
 * in as the caller's session user; when no source knows that user the answer
 * is "none" (the SQL API then refuses with 28000 naming the role) — never a
 * fallback to another, more privileged login.
 *
 * Sources, first match wins: an explicit mapping (JSON `{"role": "password"}`),
 * a pgpass-format file, and a private Unix socket with trust auth. The files
 * are trusted only when private (private-file.ts), as libpq demands of ~/.pgpass.
 */
import type pg from 'pg';
import pgpass from 'pgpass/lib/helper.js';
import { PgbgError, SqlState } from '../protocol/errors.js';
import { readPrivateFile } from '../util/private-file.js';
import type { CredentialsFor } from './sql-api-handler.js';

export interface CredentialOptions {
  /** Host and port of the PostgreSQL server the workers log in to. */
  host: string;
  port: number;
  /** A directory with the server's Unix socket where `trust` auth applies (the embedded default). */
  trustSocketDir?: string | undefined;
  /** A pgpass-format file (host:port:database:user:password, `*` wildcards). */
  pgpassFile?: string | undefined;
  /** A JSON file mapping role names to passwords. */
  passwordsFile?: string | undefined;
}

export function loadCredentials(options: CredentialOptions): CredentialsFor {
  const passwords = options.passwordsFile ? readPasswords(options.passwordsFile) : new Map<string, string>();
  const pgpassEntries = options.pgpassFile ? readPgpass(options.pgpassFile) : [];
  return (database, user) => {
    const base: pg.ClientConfig = { host: options.host, port: options.port, user, database };
    const mapped = passwords.get(user);
    if (mapped !== undefined) return { ...base, password: mapped };
    const entry = pgpassEntries.find((e) => pgpass.match({ host: options.host, port: options.port, database, user }, e));
    if (entry) return { ...base, password: entry.password };
    if (options.trustSocketDir) return { ...base, host: options.trustSocketDir };
    return undefined;
  };
}

function readPgpass(file: string) {
  const entries = [];
  for (const line of readPrivateFile(file, 'credentials file').split(/\r?\n/)) {
    const entry = pgpass.parseLine(line);
    if (entry && pgpass.isValidEntry(entry)) entries.push(entry);
  }
  return entries;
}

function readPasswords(file: string): Map<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readPrivateFile(file, 'credentials file'));
  } catch (err) {
    if (err instanceof PgbgError) throw err;
    // The message of a JSON syntax error may quote the file's text: keep secrets out of it.
    throw new PgbgError(SqlState.invalidParameterValue, `credentials file "${file}" is not valid JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new PgbgError(SqlState.invalidParameterValue, `credentials file "${file}" must map role names to passwords`);
  }
  const map = new Map<string, string>();
  for (const [role, password] of Object.entries(parsed)) {
    if (typeof password !== 'string') {
      throw new PgbgError(SqlState.invalidParameterValue, `credentials file "${file}": the password of "${role}" must be a string`);
    }
    map.set(role, password);
  }
  return map;
}
