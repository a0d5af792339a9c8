/** Shared helpers for tests that talk to the real PostgreSQL started by test/run.ts. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { lingeringSessions, recordLeakedSessions } from './leaks.js';

export function serverUrl(): string {
  const url = process.env.PGBG_TEST_DATABASE_URL;
  if (!url) throw new Error('PGBG_TEST_DATABASE_URL is not set: run the tests with `npm test`');
  return url;
}

export function urlFor(database: string, user?: { name: string; password: string }): string {
  const u = new URL(serverUrl());
  u.pathname = '/' + encodeURIComponent(database);
  if (user) {
    u.username = encodeURIComponent(user.name);
    u.password = encodeURIComponent(user.password);
  }
  return u.toString();
}

export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** A fresh database per test file: cheap isolation on one server. */
export async function createTestDatabase(prefix = 'pgbg_t'): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  await withClient(serverUrl(), (c) => c.query(`CREATE DATABASE ${name}`));
  return {
    name,
    url: urlFor(name),
    // FORCE ends what is still connected; whatever a test left (after a bounded wait for closing
    // clients to leave) is recorded first, so the run reports it instead of the drop hiding it.
    drop: () => withClient(serverUrl(), async (c) => {
      const left = await lingeringSessions(c, 'datname = $1', name);
      if (left.length > 0) recordLeakedSessions(name, left);
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }),
  };
}

/**
 * On managed PostgreSQL the admin creates the roles, and so (from PostgreSQL 16) holds ADMIN on
 * them, without their privileges. Roles the harness creates as superuser are given to the admin
 * that way when one is set (test/helpers/sql-api.ts, PGBG_TEST_MANAGED).
 */
let roleAdmin: string | undefined;
export function setRoleAdmin(name: string | undefined): void {
  roleAdmin = name;
}
export async function adoptRole(name: string): Promise<void> {
  if (roleAdmin === undefined) return;
  await withClient(serverUrl(), async (c) => {
    const v = Number((await c.query("SELECT current_setting('server_version_num') AS v")).rows[0].v);
    await c.query(v >= 160000 ? `GRANT ${name} TO ${roleAdmin} WITH ADMIN TRUE, INHERIT FALSE, SET FALSE` : `GRANT ${name} TO ${roleAdmin} WITH ADMIN OPTION`);
  });
}

/** A LOGIN role with a random password (dropped by the caller). */
export async function createLoginRole(prefix = 'pgbg_r'): Promise<{ name: string; password: string }> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  await withClient(serverUrl(), (c) => c.query(`CREATE ROLE ${name} LOGIN PASSWORD '${password}'`));
  await adoptRole(name);
  return { name, password };
}
