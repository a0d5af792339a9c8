/**
 * Is the server ready: PostgreSQL answers within a timeout, is not read-only,
 * the journal's login may write its table, and the journal's writes are not
 * stuck behind. One probe at a time, its answer kept a second: /readyz needs
 * no token, so callers must not be able to make it open connections at will.
 */
import type pg from 'pg';
import type { JournalLag } from '../journal/journal.js';

export type Readiness =
  | { ready: true; postgresVersion: string; checkedAt: Date }
  | { ready: false; reason: string; code: string | undefined; postgresVersion: string | undefined; checkedAt: Date };

export interface ReadinessOptions {
  /** Connections for the probe (the HTTP API's own pool: bounded, with connect and statement timeouts). */
  db: pg.Pool;
  /** The journal's table, quoted (`"pgbg_server".jobs`). */
  journalTable: string;
  journalLag: () => JournalLag;
  /** True once the server is stopping. */
  stopping: () => boolean;
  /** @default 2000 */
  timeoutMs?: number;
  /** How long an answer is reused. @default 1000 */
  cacheMs?: number;
  /** A journal record waiting longer than this makes the server unready. @default 30000 */
  maxJournalLagMs?: number;
}

export class ReadinessProbe {
  readonly #options: ReadinessOptions;
  #last: Readiness | undefined;
  #running: Promise<Readiness> | undefined;
  /** The version of the last PostgreSQL that answered. */
  #version: string | undefined;

  constructor(options: ReadinessOptions) {
    this.#options = options;
  }

  check(): Promise<Readiness> {
    const { cacheMs = 1000 } = this.#options;
    if (this.#last && Date.now() - this.#last.checkedAt.getTime() < cacheMs) return Promise.resolve(this.#last);
    this.#running ??= this.#probe().then((r) => {
      this.#last = r;
      return r;
    }).finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #probe(): Promise<Readiness> {
    const { db, journalTable, journalLag, stopping, timeoutMs = 2000, maxJournalLagMs = 30_000 } = this.#options;
    const unready = (reason: string, code?: string): Readiness =>
      ({ ready: false, reason, code, postgresVersion: this.#version, checkedAt: new Date() });
    if (stopping()) return unready('the server is stopping', '57P01');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('timeout'), { code: '57014' })), timeoutMs);
    });
    try {
      const query = db.query<{ version: string; recovery: boolean; read_only: string; can_write: boolean }>(
        `SELECT pg_catalog.current_setting('server_version') AS version, pg_catalog.pg_is_in_recovery() AS recovery,
                pg_catalog.current_setting('default_transaction_read_only') AS read_only,
                pg_catalog.has_table_privilege($1, 'INSERT, UPDATE') AS can_write`,
        [journalTable],
      );
      query.catch(() => undefined); // settles after a timeout unobserved
      const { rows } = await Promise.race([query, timeout]);
      const r = rows[0]!;
      this.#version = r.version;
      if (r.recovery) return unready('PostgreSQL is a standby (in recovery): the journal cannot be written', '25006');
      if (r.read_only === 'on') return unready('PostgreSQL is read-only (default_transaction_read_only): the journal cannot be written', '25006');
      if (!r.can_write) return unready('the journal\'s login may not write its table', '42501');
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      // The reason names the kind of failure, never a server's address or message: /readyz needs no token.
      if (code === '57014') return unready(`PostgreSQL did not answer within ${timeoutMs} ms`, '57014');
      if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return unready(`PostgreSQL refused the check (SQLSTATE ${code})`, code);
      return unready(`PostgreSQL is unreachable${typeof code === 'string' ? ` (${code})` : ''}`, '08006');
    } finally {
      clearTimeout(timer);
    }
    const lag = journalLag();
    if (lag.pendingSince && Date.now() - lag.pendingSince.getTime() > maxJournalLagMs) {
      return unready(`${lag.pending} journal record(s) have waited more than ${maxJournalLagMs} ms to be written`, '08006');
    }
    return { ready: true, postgresVersion: this.#version!, checkedAt: new Date() };
  }
}
