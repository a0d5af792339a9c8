/**
 * A pgbg SQL API endpoint for tests: an engine, the role-key reader, the
 * handler and the wire server, in this process, serving one test database
 * where the API is installed. Worker credentials come from `logins` (role →
 * connection URL): one login per role, never a fallback to another.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Engine, type EngineOptions } from '../../src/index.js';
import { install } from '../../src/install/install.js';
import type { ApiVersion } from '../../src/install/script.js';
import { RoleKeys } from '../../src/server/role-keys.js';
import { roleOfLogin, SqlApiHandler } from '../../src/server/sql-api-handler.js';
import { startWireServer, type WireServer } from '../../src/server/wire.js';
import { serverUrl, setRoleAdmin, urlFor, withClient } from './db.js';
import { testLogger } from './engine.js';

export interface TestApi {
  engine: Engine;
  handler: SqlApiHandler;
  server: WireServer;
  keys: RoleKeys;
  /** Worker credentials: role name → connection URL. */
  logins: Map<string, string>;
  /**
   * Who the tests call the API as: the installing role (the superuser of the harness, or with
   * MANAGED the non-superuser admin — on managed PostgreSQL nobody is superuser).
   */
  callerUrl: string;
  /** Requests the server received, by op (to check how many round trips a call costs). */
  ops: Map<string, number>;
  close(): Promise<void>;
}

/** The superuser login the harness runs as, in `database`. */
export function adminConfig(database: string): pg.ClientConfig {
  const u = new URL(serverUrl());
  return { host: u.hostname, port: Number(u.port), user: decodeURIComponent(u.username), password: decodeURIComponent(u.password), database };
}

/** True when the suite runs as on managed PostgreSQL: a non-superuser admin installs (PGBG_TEST_MANAGED=1). */
export const MANAGED = process.env.PGBG_TEST_MANAGED === '1';

/**
 * As a provider's admin role is: LOGIN CREATEROLE, owner of the database, dblink created
 * beforehand by a superuser, USAGE on dblink_fdw — and no superuser.
 */
async function managedAdmin(database: string): Promise<{ name: string; url: string; config: (db: string) => pg.ClientConfig }> {
  const name = `pgbg_admin_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  // (pgbackground_role is shared by the cluster: the admin that first installed made it and may grant it;
  // each test file's admin here is another role, so it is given that right as the first one had it.)
  await withClient(serverUrl(), (c) => c.query(`CREATE ROLE ${name} LOGIN CREATEROLE PASSWORD '${password}'; ALTER DATABASE ${database} OWNER TO ${name};
    DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgbackground_role') THEN GRANT pgbackground_role TO ${name} WITH ADMIN OPTION; END IF; END $$`));
  await withClient(urlFor(database), (c) => c.query(`CREATE EXTENSION IF NOT EXISTS dblink; GRANT USAGE ON FOREIGN DATA WRAPPER dblink_fdw TO ${name}`));
  const url = urlFor(database, { name, password });
  setRoleAdmin(name);
  return { name, url, config: (db) => ({ ...adminConfig(db), user: name, password }) };
}

/**
 * Starts an endpoint and (unless `install` is false) installs the API in the database of
 * `adminUrl` — as that login, or with MANAGED as a non-superuser admin (then `callerUrl`).
 */
export async function startTestApi(
  adminUrl: string,
  options: { admin?: (database: string) => pg.ClientConfig; install?: boolean; apiVersion?: ApiVersion; engine?: EngineOptions } = {},
): Promise<TestApi> {
  const engine = new Engine({ logger: testLogger(), ...options.engine });
  const database = decodeURIComponent(new URL(adminUrl).pathname.slice(1));
  const managed = MANAGED && options.install !== false ? await managedAdmin(database) : undefined;
  const keys = new RoleKeys(options.admin ?? managed?.config ?? adminConfig, testLogger());
  const logins = new Map<string, string>();
  const admin = new URL(adminUrl);
  logins.set(decodeURIComponent(admin.username), adminUrl);
  if (managed) logins.set(managed.name, managed.url);
  const handler = new SqlApiHandler({
    engine, keys,
    credentialsFor: (_database, user) => (logins.has(user) ? { connectionString: logins.get(user)! } : undefined),
  });
  const ops = new Map<string, number>();
  const query = handler.query.bind(handler);
  handler.query = (text, conn, signal) => {
    try {
      const op = (JSON.parse(text.slice(text.indexOf('\n') + 1)) as { op?: string }).op ?? '?';
      ops.set(op, (ops.get(op) ?? 0) + 1);
    } catch {
      ops.set('?', (ops.get('?') ?? 0) + 1);
    }
    return query(text, conn, signal);
  };
  const server = await startWireServer({
    handler,
    logger: testLogger(),
    authenticate: async (user, database) => {
      const oid = roleOfLogin(user);
      const key = oid === undefined ? undefined : await keys.read(database, oid);
      return key ? { scramVerifier: key.scram } : undefined;
    },
  });
  if (options.install !== false) {
    const client = new pg.Client({ connectionString: managed?.url ?? adminUrl });
    await client.connect();
    try {
      await install(client, { endpoint: { host: '127.0.0.1', port: server.port }, apiVersion: options.apiVersion ?? '1.8' });
    } finally {
      await client.end();
    }
  }
  return {
    engine, handler, server, keys, logins, ops, callerUrl: managed?.url ?? adminUrl,
    async close() {
      await server.close();
      await engine.close();
      await keys.close();
      // The admin owns the database (dropped with it by the caller) and the API's objects in it.
      if (managed) {
        setRoleAdmin(undefined);
        await withClient(urlFor(database), (c) => c.query(`ALTER DATABASE ${database} OWNER TO CURRENT_USER; REASSIGN OWNED BY ${managed.name} TO CURRENT_USER; DROP OWNED BY ${managed.name}`));
        await withClient(serverUrl(), (c) => c.query(`DROP ROLE ${managed.name}`)).catch(() => undefined);
      }
    },
  };
}
