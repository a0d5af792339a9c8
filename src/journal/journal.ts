/**
 * The server's job journal: one row per job (state, timings, role, error) in
 * the server's own schema. Writes are group-committed and written behind the
 * launches: records gather for 50 ms (or while a write is in flight) and leave
 * in one statement, so the journal costs one round trip per batch, not per
 * job, and a launch never waits for it. On open, jobs an earlier run left
 * `running` are marked `lost` and returned, so a crash never forgets them
 * silently (a crash can lose only the last 50 ms of records).
 *
 * Retention: jobs launched more than `retentionDays` ago (and ended runs left
 * without jobs) are deleted at open and then every hour, in bounded batches.
 * With `sql: 'none'` no SQL text is stored at all (SQL can hold passwords).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import type { JobObserver } from '../engine/observer.js';
import type { JobSnapshot } from '../engine/types.js';

export interface JournalOptions {
  /**
   * Days a job stays on record: older ones (by `launched_at`; never one still
   * running) are deleted at open and then every hour. 0 = kept forever. @default 7
   */
  retentionDays?: number;
  /**
   * What `sql_preview` holds: `preview`, the first 120 characters of the
   * job's SQL; `none`, no SQL text at all (''). @default 'preview'
   */
  sql?: 'preview' | 'none';
  /** How often retention runs after the open. @default 3_600_000 (an hour) */
  pruneEveryMs?: number;
  /**
   * A new connection to the journal's database, for when the journal's own is
   * lost (PostgreSQL restarted): records written meanwhile wait, none is dropped.
   * Without it a lost connection stays lost and its records are logged as unwritten.
   */
  reconnect?: () => Promise<pg.Client>;
  /** Pause between attempts to reconnect. @default 1000 */
  reconnectEveryMs?: number;
}

/** How far behind the journal's writes are (metrics, readiness). */
export interface JournalLag {
  /** Records not written yet (queued, or in a write under way). */
  pending: number;
  /** Since when some record waits (undefined when none does). */
  pendingSince: Date | undefined;
  /** The last write that succeeded (the open, before any). */
  lastWriteAt: Date;
}

export interface LostJob {
  runId: string;
  pid: number;
  database: string;
  role: string;
  sqlPreview: string;
  launchedAt: Date;
}

const DEFAULT_SCHEMA = 'pgbg_server';
// 50 ms rather than 10: a job that starts and ends within one window is written once,
// and each batch's statement serves more jobs (journal backend CPU per job 0.12 → 0.07 ms).
const FLUSH_DELAY_MS = 50;
const DEFAULT_RETENTION_DAYS = 7;
const PRUNE_EVERY_MS = 3_600_000;
/** Rows one retention statement deletes at most: the journal's writes wait behind it on the connection. */
const PRUNE_BATCH = 5000;
/** Attempts to reconnect before the journal gives up on its records (with the default pause, 10 minutes). */
const RECONNECT_ATTEMPTS = 600;

export class Journal implements JobObserver {
  readonly runId = randomUUID();
  readonly #schema: string;
  #pending = new Map<bigint, JobSnapshot>();
  #flushing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #retentionDays: number;
  readonly #storeSql: boolean;
  #pruning: Promise<number> | undefined;
  #pruneTimer: NodeJS.Timeout | undefined;
  #client: pg.Client;
  /** The connection ended or failed: the next write reconnects first (given `reconnect`). */
  #lost = false;
  readonly #reconnect: (() => Promise<pg.Client>) | undefined;
  readonly #reconnectEveryMs: number;
  #inFlight = 0;
  #pendingSince: Date | undefined;
  #lastWriteAt = new Date();

  private constructor(
    client: pg.Client,
    schema: string,
    private readonly logger: Logger,
    options: JournalOptions,
  ) {
    this.#client = client;
    this.#watch(client);
    this.#reconnect = options.reconnect;
    this.#reconnectEveryMs = options.reconnectEveryMs ?? 1000;
    this.#schema = quoteIdent(schema);
    this.#retentionDays = options.retentionDays ?? DEFAULT_RETENTION_DAYS;
    if (!Number.isInteger(this.#retentionDays) || this.#retentionDays < 0) {
      throw new RangeError(`journal retention: a whole number of days, 0 or more (got ${options.retentionDays})`);
    }
    const sql = options.sql ?? 'preview';
    if (sql !== 'preview' && sql !== 'none') throw new RangeError(`journal sql: 'preview' or 'none' (got ${String(sql)})`);
    this.#storeSql = sql === 'preview';
  }

  /**
   * Creates the schema if needed, starts a run, and marks the jobs of earlier
   * runs that never ended as lost. `client` is connected and owned by the journal.
   * Retention starts behind the open (`prune()` resolves when that pass ends).
   */
  static async open(
    client: pg.Client, logger: Logger, schema = DEFAULT_SCHEMA, options: JournalOptions = {},
  ): Promise<{ journal: Journal; lost: LostJob[] }> {
    const journal = new Journal(client, schema, logger, options);
    // The journal is a record, not a transaction log: losing its last few ms in a
    // PostgreSQL crash is acceptable (the workers die with it), a round trip per commit is not.
    await client.query('SET synchronous_commit = off');
    const lost = await journal.#start();
    if (journal.#retentionDays > 0) {
      void journal.#scheduledPrune();
      journal.#pruneTimer = setInterval(() => void journal.#scheduledPrune(), options.pruneEveryMs ?? PRUNE_EVERY_MS);
      journal.#pruneTimer.unref();
    }
    return { journal, lost };
  }

  /**
   * Deletes the jobs launched more than `retentionDays` ago (none still
   * running), then the ended runs older than that with no job left; joins a
   * pass already under way. Resolves to the number of jobs deleted.
   */
  prune(): Promise<number> {
    if (this.#retentionDays === 0 || this.#closed) return Promise.resolve(0);
    this.#pruning ??= this.#prune().finally(() => {
      this.#pruning = undefined;
    });
    return this.#pruning;
  }

  async #scheduledPrune(): Promise<void> {
    try {
      const jobs = await this.prune();
      if (jobs > 0) this.logger.debug({ jobs, retentionDays: this.#retentionDays }, 'journal: old jobs deleted');
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'journal retention failed');
    }
  }

  async #prune(): Promise<number> {
    const s = this.#schema;
    const cutoff = `pg_catalog.now() - $1::int4 * interval '1 day'`;
    let jobs = 0;
    // In batches, each its own statement: a journal write waits for one batch at most. The
    // batch is found through jobs_launched_at and deleted by ctid (a TID scan, not a join).
    while (!this.#closed) {
      const { rowCount } = await this.#client.query({
        name: 'pgbg_journal_prune',
        text: `DELETE FROM ${s}.jobs WHERE ctid = ANY (ARRAY(
                 SELECT ctid FROM ${s}.jobs WHERE launched_at < ${cutoff} AND state <> 'running' LIMIT $2))`,
        values: [this.#retentionDays, PRUNE_BATCH],
      });
      jobs += rowCount ?? 0;
      if ((rowCount ?? 0) < PRUNE_BATCH) break;
    }
    if (this.#closed) return jobs;
    // A run with jobs left stays (its running jobs are judged lost by the next open); so does a
    // live run (its lock cannot be taken), however old — this run among them.
    await this.#client.query(
      `DELETE FROM ${s}.runs r
        WHERE r.run_id <> $2 AND COALESCE(r.stopped_at, r.started_at) < ${cutoff}
          AND NOT EXISTS (SELECT FROM ${s}.jobs j WHERE j.run_id = r.run_id)
          AND (r.stopped_at IS NOT NULL OR pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('pgbg run ' || r.run_id::text)))`,
      [this.#retentionDays, this.runId],
    );
    return jobs;
  }

  started(record: JobSnapshot): void {
    void this.#enqueue(record);
  }

  ended(record: JobSnapshot): void {
    void this.#enqueue(record);
  }

  get lag(): JournalLag {
    return { pending: this.#pending.size + this.#inFlight, pendingSince: this.#pendingSince, lastWriteAt: this.#lastWriteAt };
  }

  /** The schema the journal's tables are in, quoted. */
  get schema(): string {
    return this.#schema;
  }

  /** Whether `sql_preview` holds SQL text (JournalOptions.sql). */
  get storesSql(): boolean {
    return this.#storeSql;
  }

  /** Writes what is pending and ends the run. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#pruneTimer);
    await this.#pruning?.catch(() => undefined); // ends after its current batch
    await this.flush();
    const s = this.#schema;
    await this.#client.query(`UPDATE ${s}.runs SET stopped_at = now() WHERE run_id = $1`, [this.runId]).catch(() => undefined);
    await this.#client.end().catch(() => undefined);
  }

  async #start(): Promise<LostJob[]> {
    const s = this.#schema;
    await this.#client.query('BEGIN');
    try {
      await this.#client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await this.#client.query(`REVOKE ALL ON SCHEMA ${s} FROM PUBLIC`);
      await this.#client.query(`CREATE TABLE IF NOT EXISTS ${s}.runs (
        run_id uuid PRIMARY KEY, started_at timestamptz NOT NULL DEFAULT now(), stopped_at timestamptz, pid int4 NOT NULL)`);
      await this.#client.query(`CREATE TABLE IF NOT EXISTS ${s}.jobs (
        run_id uuid NOT NULL,
        cookie int8 NOT NULL,
        pid int4 NOT NULL,
        database text NOT NULL,
        role text NOT NULL,
        sql_preview text NOT NULL,
        state text NOT NULL CHECK (state IN ('running', 'stopped', 'canceled', 'error', 'lost')),
        launched_at timestamptz NOT NULL,
        started_at timestamptz,
        ended_at timestamptz,
        error_code text,
        error_message text,
        PRIMARY KEY (run_id, cookie))`);
      await this.#client.query(`CREATE INDEX IF NOT EXISTS jobs_running ON ${s}.jobs (run_id) WHERE state = 'running'`);
      // Added after the first journals: a job's label (pg_background 2.0), for the HTTP API's lists.
      const { rowCount: hasLabel } = await this.#client.query(
        "SELECT FROM pg_catalog.pg_attribute WHERE attrelid = $1::regclass AND attname = 'label' AND NOT attisdropped", [`${s}.jobs`]);
      if (!hasLabel) await this.#client.query(`ALTER TABLE ${s}.jobs ADD COLUMN IF NOT EXISTS label text`);
      // Retention finds the old jobs through it, a batch at a time, without reading the table.
      await this.#client.query(`CREATE INDEX IF NOT EXISTS jobs_launched_at ON ${s}.jobs (launched_at)`);
      // Journals of earlier versions had a foreign key to runs: its check locked the run's row
      // once per written job (a third of the journal's cost). Runs and jobs are written
      // only by this class, which inserts the run first.
      await this.#client.query(`ALTER TABLE ${s}.jobs DROP CONSTRAINT IF EXISTS jobs_run_id_fkey`);
      // Another live server may share the schema; only runs that stopped or died are ours to judge.
      const { rows } = await this.#client.query<{
        run_id: string; pid: number; database: string; role: string; sql_preview: string; launched_at: Date;
      }>(`UPDATE ${s}.jobs j SET state = 'lost', error_message = 'the pgbg server stopped before this job ended; whether it committed is unknown'
           FROM ${s}.runs r
          WHERE j.run_id = r.run_id AND j.state = 'running'
            AND (r.stopped_at IS NOT NULL OR pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('pgbg run ' || r.run_id::text)))
        RETURNING j.run_id, j.pid, j.database, j.role, j.sql_preview, j.launched_at`);
      await this.#client.query(`INSERT INTO ${s}.runs (run_id, pid) VALUES ($1, pg_catalog.pg_backend_pid())`, [this.runId]);
      await this.#client.query('COMMIT');
      // Held for the run's lifetime: a live run is one whose lock cannot be taken.
      await this.#client.query('SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtext($1))', [`pgbg run ${this.runId}`]);
      return rows.map((r) => ({
        runId: r.run_id, pid: r.pid, database: r.database, role: r.role, sqlPreview: r.sql_preview, launchedAt: r.launched_at,
      }));
    } catch (err) {
      await this.#client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  /** The write failed because the connection did (not because of what was written). */
  #connectionGone(err: unknown): boolean {
    if (this.#lost || !(err instanceof pg.DatabaseError)) return true;
    // 08: connection exceptions; 57P: the server shutting down or restarting.
    return /^(08|57P)/.test(err.code ?? '');
  }

  #watch(client: pg.Client): void {
    const lost = () => {
      if (client === this.#client) this.#lost = true;
    };
    client.on('error', lost);
    client.on('end', lost);
  }

  /**
   * A new connection, set up as the first was; the run's lock is taken again (it
   * went with the old connection) so that another server does not judge this run's
   * jobs lost. False when closed meanwhile or out of attempts.
   */
  async #reconnectNow(): Promise<boolean> {
    for (let attempt = 1; attempt <= RECONNECT_ATTEMPTS && !this.#closed; attempt++) {
      try {
        const client = await this.#reconnect!();
        this.#watch(client);
        await client.query('SET synchronous_commit = off');
        await client.query('SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtext($1))', [`pgbg run ${this.runId}`]);
        void this.#client.end().catch(() => undefined);
        this.#client = client;
        this.#lost = false;
        this.logger.info({ attempt }, 'journal reconnected');
        return true;
      } catch (err) {
        if (attempt === 1) this.logger.warn({ err: (err as Error).message }, 'journal connection lost: reconnecting');
        await new Promise((resolve) => setTimeout(resolve, this.#reconnectEveryMs));
      }
    }
    return false;
  }

  #enqueue(record: JobSnapshot): void {
    if (this.#closed && !this.#flushing) return;
    // A later record of the same job carries everything the earlier one did.
    this.#pending.set(record.cookie, record);
    this.#pendingSince ??= new Date();
    if (this.#flushing || this.#timer) return;
    // A short delay lets one write carry many jobs' starts and ends: each socket write costs the server CPU.
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flushing ??= this.#flushLoop();
    }, FLUSH_DELAY_MS);
  }

  /** Writes every record queued so far. */
  async flush(): Promise<void> {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#flushing ??= this.#flushLoop();
    }
    while (this.#flushing) await this.#flushing;
  }

  async #flushLoop(): Promise<void> {
    try {
      while (this.#pending.size > 0) {
        if (this.#lost && this.#reconnect && !(await this.#reconnectNow())) break;
        const batch = [...this.#pending.values()];
        this.#pending = new Map();
        const writing = new Date();
        this.#inFlight = batch.length;
        try {
          await this.#write(batch);
          this.#lastWriteAt = new Date();
          // Records queued meanwhile wait since this write began, at most.
          this.#pendingSince = this.#pending.size > 0 ? writing : undefined;
        } catch (err) {
          if (this.#reconnect && !this.#closed && this.#connectionGone(err)) {
            this.#lost = true;
            // Written again after the reconnect, unless a later record of the job came meanwhile.
            for (const r of batch) if (!this.#pending.has(r.cookie)) this.#pending.set(r.cookie, r);
            continue;
          }
          this.logger.error({ jobs: batch.length, err: (err as Error).message }, 'journal write failed');
        } finally {
          this.#inFlight = 0;
        }
      }
      if (this.#pending.size > 0) {
        this.logger.error({ jobs: this.#pending.size }, 'journal write failed: no connection to the journal database');
        this.#pending = new Map();
      }
      if (this.#pending.size === 0) this.#pendingSince = undefined;
    } finally {
      this.#flushing = undefined;
    }
  }

  async #write(records: JobSnapshot[]): Promise<void> {
    const rows = records.map((r) => ({
      cookie: r.cookie.toString(),
      pid: r.pid,
      database: r.database,
      role: r.role,
      sql_preview: this.#storeSql ? r.sqlPreview : '',
      label: r.label ?? null,
      // The journal's 'running' is "launched, not ended": a job still waiting to send its SQL counts.
      state: r.state === 'starting' ? 'running' : r.state,
      launched_at: r.launchedAt.toISOString(),
      started_at: r.startedAt?.toISOString() ?? null,
      ended_at: r.endedAt?.toISOString() ?? null,
      error_code: r.errorCode ?? null,
      error_message: r.errorMessage ?? null,
    }));
    const s = this.#schema;
    // A named statement: PostgreSQL parses and plans it once per run, not once per batch.
    await this.#client.query({
      name: 'pgbg_journal_write',
      text: `INSERT INTO ${s}.jobs (run_id, cookie, pid, database, role, sql_preview, label, state, launched_at, started_at, ended_at, error_code, error_message)
       SELECT $1::uuid, cookie, pid, database, role, sql_preview, label, state, launched_at, started_at, ended_at, error_code, error_message
         FROM pg_catalog.json_populate_recordset(NULL::${s}.jobs, $2::json)
       ON CONFLICT (run_id, cookie) DO UPDATE SET state = EXCLUDED.state, started_at = EXCLUDED.started_at,
         ended_at = EXCLUDED.ended_at, error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message`,
      values: [this.runId, JSON.stringify(rows)],
    });
  }
}


function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
