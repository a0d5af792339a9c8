/**
 * What the server knows of each role that may use the SQL API in a database:
 * the values derived from its secret (pgbg_private.role_keys, written by
 * grant_pg_background_privileges), its current name and whether it can log in.
 * Read through one connection per database as the server's admin login, and
 * re-read at every endpoint login and at most a second after the last read for
 * a request, so a renewed secret or a revoked role takes effect at once.
 *
 * A role is found by OID only, and only while it still has its user mapping on
 * the endpoint's foreign server: a role dropped and re-created under the same
 * name is another OID, and has nothing here until it is granted access.
 */
import pg from 'pg';
import type { Logger } from 'pino';

export interface RoleKey {
  roleOid: number;
  /** The role's name now (it may have been renamed since it was granted). */
  name: string;
  canLogin: boolean;
  /** sha256(secret): checks request proofs. */
  proofKey: Buffer;
  /** SCRAM-SHA-256 verifier of the secret: checks the endpoint login. */
  scram: string;
  readAt: number;
}

/** How long a key read for a request may be reused. */
const FRESH_MS = 1000;

/**
 * A key counts only while its role may use the API (member of pgbackground_role, USAGE on the
 * foreign server, its mapping still there), and only for a role the admin login could act as
 * itself: whoever owns role_keys could write a key for any role, so no more than its own rights
 * (a superuser's, the roles it is a member of — PostgreSQL 16's CREATEROLE creator — or, before
 * 16, any non-superuser role for a CREATEROLE admin, which can grant itself into any).
 */
const KEY_SQL = `SELECT k.role_oid::int8 AS role_oid, r.rolname, r.rolcanlogin, k.proof_key, k.scram
  FROM pgbg_private.role_keys k
  JOIN pg_catalog.pg_roles r ON r.oid = k.role_oid
  CROSS JOIN (SELECT a.rolsuper, a.rolcreaterole FROM pg_catalog.pg_roles a WHERE a.rolname = current_user) me
 WHERE k.role_oid = $1
   AND EXISTS (SELECT 1 FROM pg_catalog.pg_user_mappings m WHERE m.umuser = k.role_oid AND m.srvname = 'pgbg')
   AND pg_catalog.pg_has_role(k.role_oid, 'pgbackground_role', 'MEMBER')
   AND pg_catalog.has_server_privilege(k.role_oid, 'pgbg', 'USAGE')
   AND (me.rolsuper OR (NOT r.rolsuper AND (pg_catalog.pg_has_role(current_user, k.role_oid, 'MEMBER')
        OR (me.rolcreaterole AND pg_catalog.current_setting('server_version_num')::int < 160000))))`;

const DATABASE_SQL = 'SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1 AND datallowconn';

// application_name is one of the columns pg_stat_activity shows every role, for every backend.
const BACKEND_SQL = `SELECT a.application_name FROM pg_catalog.pg_stat_activity a
  WHERE a.pid = $1 AND a.datname = pg_catalog.current_database()`;

export class RoleKeys {
  readonly #clients = new Map<string, Promise<pg.Client>>();
  readonly #tails = new Map<string, Promise<unknown>>();
  readonly #cache = new Map<string, RoleKey>();
  #closed = false;

  readonly #home: string;

  constructor(
    /** The server's admin login for a database (the installer's role, or a superuser). */
    private readonly admin: (database: string) => pg.ClientConfig,
    private readonly logger: Logger,
    /** A database the admin login can always reach (where it asks which others exist). @default 'postgres' */
    home = 'postgres',
  ) {
    this.#home = home;
  }

  /** The role's key, read now (endpoint logins); undefined when the role may not use the API here. */
  async read(database: string, roleOid: number): Promise<RoleKey | undefined> {
    let rows: { role_oid: string; rolname: string; rolcanlogin: boolean; proof_key: Buffer; scram: string }[];
    // A login names any database it likes, before it has proved anything: a connection is opened
    // only for a database that exists (asked on the first database's connection).
    if (!(await this.#exists(database))) return undefined;
    try {
      rows = (await this.#query(database, KEY_SQL, [roleOid])).rows as typeof rows;
    } catch (err) {
      // No API in that database (42P01), or it cannot be reached: nobody logs in.
      this.logger.debug({ database, code: (err as { code?: string }).code }, 'role keys not readable');
      return undefined;
    }
    const row = rows[0];
    const key = `${database}\u0000${roleOid}`;
    if (!row) {
      this.#cache.delete(key);
      return undefined;
    }
    const found: RoleKey = {
      roleOid: Number(row.role_oid), name: row.rolname, canLogin: row.rolcanlogin, proofKey: row.proof_key, scram: row.scram, readAt: Date.now(),
    };
    this.#cache.set(key, found);
    return found;
  }

  /** The role's key, from a read less than a second old when there is one (requests). */
  async current(database: string, roleOid: number): Promise<RoleKey | undefined> {
    const cached = this.#cache.get(`${database}\u0000${roleOid}`);
    if (cached && Date.now() - cached.readAt < FRESH_MS) return cached;
    return this.read(database, roleOid);
  }

  /** The application_name of a backend of `database` now; undefined when there is no such backend. */
  async backendApplicationName(database: string, pid: number): Promise<string | undefined> {
    const { rows } = await this.#query(database, BACKEND_SQL, [pid]);
    return (rows[0] as { application_name: string | null } | undefined)?.application_name ?? undefined;
  }

  readonly #known = new Map<string, { exists: boolean; at: number }>();

  async #exists(database: string): Promise<boolean> {
    if (this.#clients.has(database)) return true;
    const cached = this.#known.get(database);
    if (cached && Date.now() - cached.at < 10_000) return cached.exists;
    const first = this.#clients.keys().next().value ?? this.#home;
    const exists = await this.#query(first, DATABASE_SQL, [database]).then((r) => r.rows.length > 0, () => false);
    if (this.#known.size > 1000) this.#known.clear();
    this.#known.set(database, { exists, at: Date.now() });
    return exists;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const clients = [...this.#clients.values()];
    this.#clients.clear();
    await Promise.all(clients.map((c) => c.then((client) => client.end()).catch(() => undefined)));
  }

  async #query(database: string, sql: string, params: unknown[]): Promise<pg.QueryResult> {
    if (this.#closed) throw new Error('closed');
    let connecting = this.#clients.get(database);
    if (!connecting) {
      const client = new pg.Client({ ...this.admin(database), application_name: 'pgbg keys' });
      client.on('error', () => this.#clients.delete(database));
      connecting = client.connect().then(() => client);
      connecting.catch(() => this.#clients.delete(database));
      this.#clients.set(database, connecting);
    }
    const client = await connecting;
    // One query at a time per connection.
    const run = (this.#tails.get(database) ?? Promise.resolve()).then(() => client.query(sql, params));
    this.#tails.set(database, run.catch(() => undefined));
    return run;
  }
}
