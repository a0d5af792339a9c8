/**
 * The server's job journal: one row per job (state, timings, role, error) in
 * the server's own schema. Writes are group-committed and written behind the
 * launches: records gather for 50 ms (or while a write is in flight) and leave
 * in one statement, so the journal costs one round trip per batch, not per
 * job, and a launch never waits for it. On open, jobs an earlier run left
 * `running` are marked `lost` and returned, so a crash never forgets them
 * silently (a crash can lose only the last 50 ms of records).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import type { JobObserver, JobRecord } from '../engine/observer.js';

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

export class Journal implements JobObserver {
  readonly runId = randomUUID();
  readonly #schema: string;
  #pending = new Map<bigint, JobRecord>();
  #flushing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(
    private readonly client: pg.Client,
    schema: string,
    private readonly logger: Logger,
  ) {
    this.#schema = quoteIdent(schema);
  }

  /**
   * Creates the schema if needed, starts a run, and marks the jobs of earlier
   * runs that never ended as lost. `client` is connected and owned by the journal.
   */
  static async open(client: pg.Client, logger: Logger, schema = DEFAULT_SCHEMA): Promise<{ journal: Journal; lost: LostJob[] }> {
    const journal = new Journal(client, schema, logger);
    // The journal is a record, not a transaction log: losing its last few ms in a
    // PostgreSQL crash is acceptable (the workers die with it), a round trip per commit is not.
    await client.query('SET synchronous_commit = off');
    const lost = await journal.#start();
    return { journal, lost };
  }

  started(record: JobRecord): void {
    void this.#enqueue(record);
  }

  ended(record: JobRecord): void {
    void this.#enqueue(record);
  }

  /** Writes what is pending and ends the run. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.flush();
    const s = this.#schema;
    await this.client.query(`UPDATE ${s}.runs SET stopped_at = now() WHERE run_id = $1`, [this.runId]).catch(() => undefined);
    await this.client.end().catch(() => undefined);
  }

  async #start(): Promise<LostJob[]> {
    const s = this.#schema;
    await this.client.query('BEGIN');
    try {
      await this.client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await this.client.query(`REVOKE ALL ON SCHEMA ${s} FROM PUBLIC`);
      await this.client.query(`CREATE TABLE IF NOT EXISTS ${s}.runs (
        run_id uuid PRIMARY KEY, started_at timestamptz NOT NULL DEFAULT now(), stopped_at timestamptz, pid int4 NOT NULL)`);
      await this.client.query(`CREATE TABLE IF NOT EXISTS ${s}.jobs (
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
      await this.client.query(`CREATE INDEX IF NOT EXISTS jobs_running ON ${s}.jobs (run_id) WHERE state = 'running'`);
      // Journals of earlier versions had a foreign key to runs: its check locked the run's row
      // once per written job (a third of the journal's cost). Runs and jobs are written
      // only by this class, which inserts the run first.
      await this.client.query(`ALTER TABLE ${s}.jobs DROP CONSTRAINT IF EXISTS jobs_run_id_fkey`);
      // Another live server may share the schema; only runs that stopped or died are ours to judge.
      const { rows } = await this.client.query<{
        run_id: string; pid: number; database: string; role: string; sql_preview: string; launched_at: Date;
      }>(`UPDATE ${s}.jobs j SET state = 'lost', error_message = 'the pgbg server stopped before this job ended; whether it committed is unknown'
           FROM ${s}.runs r
          WHERE j.run_id = r.run_id AND j.state = 'running'
            AND (r.stopped_at IS NOT NULL OR pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('pgbg run ' || r.run_id::text)))
        RETURNING j.run_id, j.pid, j.database, j.role, j.sql_preview, j.launched_at`);
      await this.client.query(`INSERT INTO ${s}.runs (run_id, pid) VALUES ($1, pg_catalog.pg_backend_pid())`, [this.runId]);
      await this.client.query('COMMIT');
      // Held for the run's lifetime: a live run is one whose lock cannot be taken.
      await this.client.query('SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtext($1))', [`pgbg run ${this.runId}`]);
      return rows.map((r) => ({
        runId: r.run_id, pid: r.pid, database: r.database, role: r.role, sqlPreview: r.sql_preview, launchedAt: r.launched_at,
      }));
    } catch (err) {
      await this.client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  #enqueue(record: JobRecord): void {
    if (this.#closed && !this.#flushing) return;
    // A later record of the same job carries everything the earlier one did.
    this.#pending.set(record.cookie, record);
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
        const batch = [...this.#pending.values()];
        this.#pending = new Map();
        try {
          await this.#write(batch);
        } catch (err) {
          this.logger.error({ jobs: batch.length, err: (err as Error).message }, 'journal write failed');
        }
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  async #write(records: JobRecord[]): Promise<void> {
    const rows = records.map((r) => ({
      cookie: r.cookie.toString(),
      pid: r.pid,
      database: r.database,
      role: r.role,
      sql_preview: r.sqlPreview,
      state: r.state,
      launched_at: r.launchedAt.toISOString(),
      started_at: r.startedAt?.toISOString() ?? null,
      ended_at: r.endedAt?.toISOString() ?? null,
      error_code: r.errorCode ?? null,
      error_message: r.errorMessage ?? null,
    }));
    const s = this.#schema;
    // A named statement: PostgreSQL parses and plans it once per run, not once per batch.
    await this.client.query({
      name: 'pgbg_journal_write',
      text: `INSERT INTO ${s}.jobs (run_id, cookie, pid, database, role, sql_preview, state, launched_at, started_at, ended_at, error_code, error_message)
       SELECT $1::uuid, cookie, pid, database, role, sql_preview, state, launched_at, started_at, ended_at, error_code, error_message
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
