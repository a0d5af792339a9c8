/**
 * Warm worker connections per login (server, database, user, credentials).
 * A launch on a warm connection costs no connection setup at all. Between jobs
 * a connection is reset with DISCARD ALL (temp tables, settings, prepared
 * statements, advisory locks, LISTEN, role); one whose state is uncertain
 * (lost, canceled, left in a transaction) is closed instead. Old connections
 * retire after a lifetime or job-count cap.
 *
 * When no connection can be had (our caps, or the server's max_connections),
 * a launch waits in a bounded queue until its deadline, or fails at once when
 * the policy is 'fail'; either way the final error is SQLSTATE 53000 naming
 * the limit that was hit.
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import pg from 'pg';
import { parse as parseConnectionString } from 'pg-connection-string';
import type { Logger } from 'pino';
import { errors, PgbgError } from '../protocol/errors.js';
import { WorkerConnection } from './worker.js';

export interface PoolOptions {
  /**
   * Most worker connections for one login (database + user). By default a
   * fair share: a quarter of maxConnections (at least 1), so that one login
   * can never hold the whole pool, nor two of them shut everyone else out.
   * @default max(1, floor(maxConnections / 4)) — 32 of 128
   */
  maxConnectionsPerLogin?: number;
  /** Most worker connections overall. @default 128 */
  maxConnections?: number;
  /** Idle connections are closed after this long. @default 30000 */
  idleTimeoutMs?: number;
  /** A connection retires after this long. @default 1800000 */
  maxLifetimeMs?: number;
  /** A connection retires after this many jobs. @default 10000 */
  maxJobsPerConnection?: number;
  /** What a launch does when no connection can be had: wait in a queue, or fail at once. @default 'queue' */
  whenExhausted?: 'queue' | 'fail';
  /** How long a queued launch waits before failing with 53000. @default 10000 */
  acquireTimeoutMs?: number;
  /** Most launches waiting at once; more fail at once with 53000. @default 1000 */
  maxQueuedLaunches?: number;
}

/** A login's share of the pool when maxConnectionsPerLogin is not given. */
export function fairShare(maxConnections: number): number {
  return Math.max(1, Math.floor(maxConnections / 4));
}

const DEFAULTS: Omit<Required<PoolOptions>, 'maxConnectionsPerLogin'> = {
  maxConnections: 128,
  idleTimeoutMs: 30_000,
  maxLifetimeMs: 30 * 60_000,
  maxJobsPerConnection: 10_000,
  whenExhausted: 'queue',
  acquireTimeoutMs: 10_000,
  maxQueuedLaunches: 1000,
};

/** The credentials a worker logs in with; `key` identifies the pool. */
export interface Login {
  readonly config: pg.ClientConfig;
  readonly key: string;
  /** The user workers log in as. */
  readonly user: string;
  readonly database: string;
  /** For messages and logs: user@database (never the password). */
  readonly label: string;
  /** The OID the login's role must have: checked on every new connection (a role renamed, and its old name reused, is another role). */
  readonly roleOid?: number | undefined;
}

export function makeLogin(config: pg.ClientConfig | string, expect: { roleOid?: number } = {}): Login {
  const c: pg.ClientConfig = typeof config === 'string' ? { connectionString: config } : { ...config };
  // The same defaults node-postgres applies (connection string, then PG* environment, then OS user).
  const fromUrl = (c.connectionString ? parseConnectionString(c.connectionString) : {}) as Record<string, unknown>;
  const pick = (key: string, env: string, fallback: string): string =>
    String((c as Record<string, unknown>)[key] ?? fromUrl[key] ?? process.env[env] ?? fallback);
  const user = pick('user', 'PGUSER', os.userInfo().username);
  const database = pick('database', 'PGDATABASE', user);
  const host = pick('host', 'PGHOST', 'localhost');
  const port = pick('port', 'PGPORT', '5432');
  const rawPassword = (c as Record<string, unknown>).password ?? fromUrl.password ?? process.env.PGPASSWORD;
  const password = typeof rawPassword === 'string' ? rawPassword : '';
  const key = createHash('sha256').update(JSON.stringify([host, port, database, user, password, expect.roleOid ?? null])).digest('hex');
  return { config: c, key, user, database, label: `${user}@${database}`, roleOid: expect.roleOid };
}

/** The connection's session user must be the role the login stands for, by OID. */
async function checkRole(worker: WorkerConnection, login: Login): Promise<void> {
  const r = await worker.query('SELECT oid::int8 AS oid FROM pg_catalog.pg_roles WHERE rolname = session_user').catch(async (err: unknown) => {
    await worker.close();
    throw err;
  });
  if (Number((r.rows[0] as { oid?: string } | undefined)?.oid) === login.roleOid) return;
  await worker.close();
  throw new PgbgError('28000', `the login "${login.user}" is no longer the role it was granted to (OID ${login.roleOid})`, {
    hint: 'The role was renamed or dropped and its name reused; grant pg_background privileges to the role again.',
  });
}

/** One login's connections, each in exactly one of these; their sizes are the counts. */
interface Bucket {
  /** The login's label (user@database), set when a connection is opened for it. */
  label: string;
  /** Most recently used last. */
  idle: WorkerConnection[];
  /** Handed out to a job. */
  inUse: Set<WorkerConnection>;
  /** Being reset (DISCARD ALL); they are back in `idle` in one round trip. */
  resetting: Set<WorkerConnection>;
  /** Being opened: one token per connection attempt. */
  opening: Set<symbol>;
}

/** A login's connections by state (WorkerPool.connectionsByLogin). */
export type ConnectionCounts = Record<'idle' | 'inUse' | 'opening' | 'resetting', number>;

function bucketSize(b: Bucket): number {
  return b.idle.length + b.inUse.size + b.resetting.size + b.opening.size;
}

export class WorkerPool {
  readonly options: Required<PoolOptions>;
  readonly #buckets = new Map<string, Bucket>();
  /** Launches waiting in the queue for a connection. */
  readonly #queued = new Set<symbol>();
  #closed = false;
  #wakeups: (() => void)[] = [];
  readonly #sweeper: NodeJS.Timeout;

  constructor(
    options: PoolOptions,
    private readonly logger: Logger,
  ) {
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as PoolOptions;
    const merged = { ...DEFAULTS, ...given };
    this.options = { ...merged, maxConnectionsPerLogin: given.maxConnectionsPerLogin ?? fairShare(merged.maxConnections) };
    this.#sweeper = setInterval(() => this.#sweep(), Math.max(1000, this.options.idleTimeoutMs / 2));
    this.#sweeper.unref();
  }

  /** Connections open now (idle + in use). */
  get size(): number {
    let n = 0;
    for (const b of this.#buckets.values()) n += bucketSize(b);
    return n;
  }

  /** Launches waiting in the queue for a connection now. */
  get queuedLaunches(): number {
    return this.#queued.size;
  }

  get idleCount(): number {
    let n = 0;
    for (const b of this.#buckets.values()) n += b.idle.length;
    return n;
  }

  /** Connections by state per login label (user@database: logins differing only in credentials are summed). */
  connectionsByLogin(): Map<string, ConnectionCounts> {
    const out = new Map<string, ConnectionCounts>();
    for (const b of this.#buckets.values()) {
      const c = out.get(b.label) ?? { idle: 0, inUse: 0, opening: 0, resetting: 0 };
      out.set(b.label, { idle: c.idle + b.idle.length, inUse: c.inUse + b.inUse.size, opening: c.opening + b.opening.size, resetting: c.resetting + b.resetting.size });
    }
    return out;
  }

  /**
   * A connection for `login` whose backend pid is not in `excludePids` (so one
   * session never holds two live handles with the same pid).
   */
  async acquire(login: Login, excludePids: ReadonlySet<number> = new Set(), signal?: AbortSignal): Promise<WorkerConnection> {
    const deadline = Date.now() + this.options.acquireTimeoutMs;
    let lastLimit: PgbgError | undefined;
    const ticket = Symbol('queued launch');
    let pidClashes = 0;
    let serverFull: boolean;
    try {
      for (let attempt = 0; ; attempt++) {
        if (this.#closed) throw errors.noCapacity('The pgbg engine is shutting down.');
        signal?.throwIfAborted();
        const idle = this.#takeIdle(login, excludePids);
        if (idle) return idle;
        // A connection of this login is being reset and will be idle in one round trip:
        // wait for it rather than open another (otherwise a launch that follows a result
        // read opens a second connection now and then, and sequential jobs grow the pool).
        if (this.#resettingFor(login, excludePids) && Date.now() < deadline) {
          await this.#nextWakeup(Math.min(deadline - Date.now(), 100), signal);
          continue;
        }
        let limit = this.#capacityLimit(login);
        serverFull = false;
        // Idle connections this caller may not take (their pids belong to its live, unread
        // handles) still count against the caps: replace one with a fresh connection instead
        // of failing "all connections busy" while every connection is idle.
        if (limit && this.#evictIdleOf(login.key)) limit = undefined;
        if (!limit) {
          const opened = await this.#open(login).catch((err: unknown) => {
            if (!isServerFull(err)) throw err;
            return err as Error;
          });
          if (opened instanceof WorkerConnection) {
            if (!excludePids.has(opened.pid)) return opened;
            // The OS gave the new backend the pid of one that exited while the caller still
            // holds a live handle for it; two live handles must never share a pid.
            this.#discard(opened, this.#bucketOf(opened));
            if (++pidClashes > 3) throw errors.noCapacity('New worker connections kept getting the pid of a live handle.');
            continue;
          }
          lastLimit = errors.noCapacity(
            "PostgreSQL refused more connections (max_connections, or the role's or database's CONNECTION LIMIT): raise that limit, or lower the pool caps so they fit.",
            `The server refused a new worker connection for ${login.label}: ${opened.message}`,
          );
          // Our own idle connections of other logins hold server slots: give one back.
          this.#evictIdleOfOtherLogin(login.key);
          serverFull = true;
        } else {
          lastLimit = limit;
        }
        if (this.options.whenExhausted === 'fail') throw lastLimit;
        if (!this.#queued.has(ticket)) {
          if (this.#queued.size >= this.options.maxQueuedLaunches) {
            throw errors.noCapacity(
              `${this.options.maxQueuedLaunches} launches are already waiting for a worker (maxQueuedLaunches).`,
              lastLimit.hint,
            );
          }
          this.#queued.add(ticket);
          this.logger.debug({ login: login.label }, 'launch queued: no worker connection available');
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          throw errors.noCapacity(
            `${lastLimit.hint ?? 'No worker connection could be had.'} The launch waited ${this.options.acquireTimeoutMs} ms (acquireTimeoutMs).`,
            lastLimit.detail,
          );
        }
        // Our own caps free up only when one of our connections is released, which wakes this
        // launch; slots of the server's max_connections that other clients free tell nobody,
        // so only then does it poll.
        await this.#nextWakeup(serverFull ? Math.min(remaining, 50 + attempt * 25, 500) : remaining, signal);
      }
    } finally {
      this.#queued.delete(ticket);
    }
  }

  /**
   * Gives a connection back. Reusable ones are reset first; the rest are
   * closed. Never throws.
   */
  release(worker: WorkerConnection, reusable: boolean): void {
    const bucket = this.#bucketOf(worker);
    const tooOld =
      Date.now() - worker.createdAt > this.options.maxLifetimeMs || worker.jobsRun >= this.options.maxJobsPerConnection;
    if (!reusable || tooOld || !worker.alive || worker.cancelSent || this.#closed) {
      this.#discard(worker, bucket);
      return;
    }
    bucket.inUse.delete(worker);
    bucket.resetting.add(worker);
    worker
      .reset()
      .then((ok) => {
        if (!ok) throw new Error('DISCARD ALL failed');
        this.logger.debug({ worker: worker.pid }, 'worker reset');
        bucket.resetting.delete(worker);
        if (this.#closed) {
          void worker.close();
        } else {
          worker.lastUsed = Date.now();
          bucket.idle.push(worker);
        }
        this.#wake();
      })
      .catch((err: unknown) => {
        this.logger.warn({ worker: worker.pid, err: (err as Error).message }, 'worker reset failed; closing it');
        this.#discard(worker, bucket);
      });
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweeper);
    const idle = [...this.#buckets.values()].flatMap((b) => b.idle.splice(0));
    this.#wake();
    await Promise.all(idle.map((w) => w.close()));
  }

  #takeIdle(login: Login, excludePids: ReadonlySet<number>): WorkerConnection | undefined {
    const bucket = this.#buckets.get(login.key);
    if (!bucket) return undefined;
    // Most recently used first: its pages are warm, and old ones can idle out.
    for (let i = bucket.idle.length - 1; i >= 0; i--) {
      const w = bucket.idle[i]!;
      if (!w.alive) {
        bucket.idle.splice(i, 1);
        continue;
      }
      if (excludePids.has(w.pid)) continue;
      bucket.idle.splice(i, 1);
      bucket.inUse.add(w);
      return w;
    }
    return undefined;
  }

  /** True when a connection of `login` that the caller may take is being reset. */
  #resettingFor(login: Login, excludePids: ReadonlySet<number>): boolean {
    const bucket = this.#buckets.get(login.key);
    if (!bucket) return false;
    for (const w of bucket.resetting) if (!excludePids.has(w.pid)) return true;
    return false;
  }

  /** Closes the oldest idle connection of `key` (ones the caller could not take); true if there was one. */
  #evictIdleOf(key: string): boolean {
    const w = this.#buckets.get(key)?.idle.shift();
    if (!w) return false;
    void w.close();
    return true;
  }

  #capacityLimit(login: Login): PgbgError | undefined {
    const bucket = this.#buckets.get(login.key);
    const forLogin = bucket ? bucketSize(bucket) : 0;
    if (forLogin >= this.options.maxConnectionsPerLogin) {
      return errors.noCapacity(
        `All ${this.options.maxConnectionsPerLogin} worker connections for ${login.label} are busy (maxConnectionsPerLogin).`,
      );
    }
    if (this.size >= this.options.maxConnections) {
      if (this.#evictIdleOfOtherLogin(login.key)) return undefined;
      return errors.noCapacity(`All ${this.options.maxConnections} pgbg worker connections are busy (maxConnections).`);
    }
    return undefined;
  }

  async #open(login: Login): Promise<WorkerConnection> {
    const bucket = this.#bucket(login.key);
    bucket.label = login.label;
    const attempt = Symbol('connection attempt');
    bucket.opening.add(attempt);
    try {
      const worker = await WorkerConnection.open({ config: login.config, logger: this.logger });
      if (login.roleOid !== undefined) await checkRole(worker, login);
      worker.poolKey = login.key;
      this.logger.debug({ worker: worker.pid, login: login.label }, 'worker connection opened');
      bucket.inUse.add(worker);
      return worker;
    } catch (err) {
      this.#wake();
      throw err;
    } finally {
      bucket.opening.delete(attempt);
    }
  }

  #evictIdleOfOtherLogin(key: string): boolean {
    for (const [k, b] of this.#buckets) {
      if (k === key || b.idle.length === 0) continue;
      const w = b.idle.shift()!;
      void w.close();
      return true;
    }
    return false;
  }

  #discard(worker: WorkerConnection, bucket: Bucket): void {
    bucket.inUse.delete(worker);
    bucket.resetting.delete(worker);
    void worker.close();
    this.#wake();
  }

  #sweep(): void {
    const now = Date.now();
    let closed = 0;
    for (const bucket of this.#buckets.values()) {
      const keep: WorkerConnection[] = [];
      for (const w of bucket.idle) {
        if (!w.alive || now - w.lastUsed > this.options.idleTimeoutMs || now - w.createdAt > this.options.maxLifetimeMs) {
          closed++;
          void w.close();
        } else keep.push(w);
      }
      bucket.idle = keep;
    }
    // Room was made: queued launches look again.
    if (closed > 0) this.#wake();
  }

  #bucket(key: string): Bucket {
    let b = this.#buckets.get(key);
    if (!b) {
      b = { label: '?', idle: [], inUse: new Set(), resetting: new Set(), opening: new Set() };
      this.#buckets.set(key, b);
    }
    return b;
  }

  #bucketOf(worker: WorkerConnection): Bucket {
    return this.#bucket(worker.poolKey);
  }

  #nextWakeup(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.#wakeups.push(done);
    });
  }

  #wake(): void {
    const w = this.#wakeups;
    this.#wakeups = [];
    for (const f of w) f();
  }
}

function isServerFull(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === '53300' || code === '53000' || code === '57P03';
}
