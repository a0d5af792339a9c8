/**
 * The engine's control connections: one per login, for terminate, lock and
 * privilege checks and the login's setting defaults. They sit outside the
 * worker pool's caps, so a full pool cannot keep a cancel or a deadlock check
 * from running — and so they are bounded here instead: one idle for
 * `idleTimeoutMs` is closed, and beyond `maxConnections` the least recently
 * used idle one is. A login's cached defaults go with its connection.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import type { Login } from '../workers/pool.js';

export interface ControlOptions {
  /**
   * Most control connections kept open (one per login). Beyond it the least recently used
   * idle one closes; one in use is never closed, so a burst may go over until it ends. @default 32
   */
  maxConnections?: number;
  /** A control connection unused this long is closed. @default 30000 */
  idleTimeoutMs?: number;
}

const DEFAULTS = { maxConnections: 32, idleTimeoutMs: 30_000 } as const;
/** How long a login's setting defaults are trusted. */
const DEFAULTS_TTL_MS = 60_000;

interface Entry {
  readonly key: string;
  client: Promise<pg.Client> | undefined;
  /** One query at a time per connection (node-postgres no longer queues them for us). */
  tail: Promise<void>;
  inFlight: number;
  lastUsed: number;
  defaults: { at: number; values: Map<string, string | null> } | undefined;
}

export class ControlConnections {
  readonly maxConnections: number;
  readonly idleTimeoutMs: number;
  /** In order of last use, least recent first (a Map keeps insertion order). */
  readonly #entries = new Map<string, Entry>();
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  constructor(options: ControlOptions, private readonly logger: Logger) {
    this.maxConnections = options.maxConnections ?? DEFAULTS.maxConnections;
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs;
    if (!Number.isInteger(this.maxConnections) || this.maxConnections < 1) throw new RangeError('control maxConnections must be a whole number, 1 or more');
    if (!(this.idleTimeoutMs > 0)) throw new RangeError('control idleTimeoutMs must be more than 0');
    this.#sweeper = setInterval(() => this.#sweep(), Math.max(10, Math.min(this.idleTimeoutMs / 2, 5000)));
    this.#sweeper.unref();
  }

  /** Control connections open (or opening) now. */
  get size(): number {
    let n = 0;
    for (const e of this.#entries.values()) if (e.client) n++;
    return n;
  }

  async query(login: Login, sql: string, params?: unknown[]): Promise<pg.QueryResult> {
    if (this.#closed) throw new Error('the engine is closed');
    const entry = this.#use(login);
    entry.client ??= this.#connect(login, entry);
    const connecting = entry.client;
    entry.inFlight++;
    const run = entry.tail.then(async () => (await connecting).query(sql, params));
    entry.tail = run.then(
      () => undefined,
      () => undefined,
    );
    try {
      return await run;
    } finally {
      entry.inFlight--;
      entry.lastUsed = Date.now();
      this.#trim();
    }
  }

  /**
   * The settings a fresh worker of `login` starts with, for the names given (null: unset);
   * cached a minute, and while the login keeps its control connection.
   */
  async defaults(login: Login, names: string[]): Promise<Map<string, string | null>> {
    const entry = this.#use(login);
    if (!entry.defaults || Date.now() - entry.defaults.at > DEFAULTS_TTL_MS) entry.defaults = { at: Date.now(), values: new Map() };
    const cached = entry.defaults;
    const missing = names.filter((n) => !cached.values.has(n));
    if (missing.length > 0) {
      const r = await this.query(login, 'SELECT n, pg_catalog.current_setting(n, true) AS v FROM pg_catalog.unnest($1::text[]) AS n', [missing]);
      for (const row of r.rows as { n: string; v: string | null }[]) cached.values.set(row.n, row.v);
    }
    return cached.values;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweeper);
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    await Promise.all(entries.map((e) => this.#end(e)));
  }

  /** The login's entry, now the most recently used; room is made for a new one. */
  #use(login: Login): Entry {
    let entry = this.#entries.get(login.key);
    if (entry) {
      this.#entries.delete(login.key);
    } else {
      entry = { key: login.key, client: undefined, tail: Promise.resolve(), inFlight: 0, lastUsed: Date.now(), defaults: undefined };
    }
    this.#entries.set(login.key, entry);
    this.#trim();
    return entry;
  }

  #connect(login: Login, entry: Entry): Promise<pg.Client> {
    const client = new pg.Client({ ...login.config, application_name: 'pgbg control' });
    const forget = () => {
      if (this.#entries.get(entry.key) === entry) entry.client = undefined;
    };
    client.on('error', forget);
    const connecting = client.connect().then(() => client);
    connecting.catch(forget);
    return connecting;
  }

  /** Over the cap: the least recently used idle entries go, never the newest (the one about to be used). */
  #trim(): void {
    let left = this.#entries.size - 1;
    for (const entry of this.#entries.values()) {
      if (this.#entries.size <= this.maxConnections || left-- === 0) return;
      if (entry.inFlight === 0) this.#evict(entry);
    }
  }

  #sweep(): void {
    const now = Date.now();
    for (const entry of [...this.#entries.values()]) {
      if (entry.inFlight === 0 && now - entry.lastUsed > this.idleTimeoutMs) this.#evict(entry);
    }
  }

  #evict(entry: Entry): void {
    this.#entries.delete(entry.key);
    this.logger.debug({ open: this.#entries.size }, 'control connection closed');
    void this.#end(entry);
  }

  async #end(entry: Entry): Promise<void> {
    const connecting = entry.client;
    entry.client = undefined;
    if (!connecting) return;
    await entry.tail;
    await connecting.then((c) => c.end()).catch(() => undefined);
  }
}
