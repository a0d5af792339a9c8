/**
 * A pgbg SQL API endpoint for tests: an engine, the role-key reader, the
 * handler and the wire server, in this process, serving one test database
 * where the API is installed. Worker credentials come from `logins` (role →
 * connection URL): one login per role, never a fallback to another.
 */
import pg from 'pg';
import { Engine } from '../../src/index.js';
import { install } from '../../src/install/install.js';
import { RoleKeys } from '../../src/server/role-keys.js';
import { roleOfLogin, SqlApiHandler } from '../../src/server/sql-api-handler.js';
import { startWireServer, type WireServer } from '../../src/server/wire.js';
import { serverUrl } from './db.js';
import { testLogger } from './engine.js';

export interface TestApi {
  engine: Engine;
  handler: SqlApiHandler;
  server: WireServer;
  keys: RoleKeys;
  /** Worker credentials: role name → connection URL. */
  logins: Map<string, string>;
  /** Requests the server received, by op (to check how many round trips a call costs). */
  ops: Map<string, number>;
  close(): Promise<void>;
}

/** The superuser login the harness runs as, in `database`. */
export function adminConfig(database: string): pg.ClientConfig {
  const u = new URL(serverUrl());
  return { host: u.hostname, port: Number(u.port), user: decodeURIComponent(u.username), password: decodeURIComponent(u.password), database };
}

/** Starts an endpoint and (unless `install` is false) installs the API in the database of `adminUrl`, as that login. */
export async function startTestApi(adminUrl: string, options: { admin?: (database: string) => pg.ClientConfig; install?: boolean } = {}): Promise<TestApi> {
  const engine = new Engine({ logger: testLogger() });
  const keys = new RoleKeys(options.admin ?? adminConfig, testLogger());
  const logins = new Map<string, string>();
  const admin = new URL(adminUrl);
  logins.set(decodeURIComponent(admin.username), adminUrl);
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
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      await install(client, { endpoint: { host: '127.0.0.1', port: server.port } });
    } finally {
      await client.end();
    }
  }
  return {
    engine, handler, server, keys, logins, ops,
    async close() {
      await server.close();
      await engine.close();
      await keys.close();
    },
  };
}
