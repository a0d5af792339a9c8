/**
 * Reading the journal back (the server's HTTP API): recent jobs, newest
 * first, and one job by cookie. Reads go through a connection of their own,
 * never the journal's (its writes must not wait behind a read).
 */
import type pg from 'pg';

/** A job as the journal has it. */
export interface JournalJob {
  runId: string;
  cookie: string;
  pid: number;
  database: string;
  role: string;
  label: string | null;
  /** '' when the journal keeps no SQL text (--journal-sql none). */
  sqlPreview: string;
  state: 'running' | 'stopped' | 'canceled' | 'error' | 'lost';
  launchedAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
  errorCode: string | null;
  errorMessage: string | null;
}

interface Row {
  run_id: string; cookie: string; pid: number; database: string; role: string; label: string | null; sql_preview: string;
  state: JournalJob['state']; launched_at: Date; started_at: Date | null; ended_at: Date | null; error_code: string | null; error_message: string | null;
}

const COLUMNS = 'run_id::text, cookie::text, pid, database, role, label, sql_preview, state, launched_at, started_at, ended_at, error_code, error_message';

function fromRow(r: Row): JournalJob {
  return {
    runId: r.run_id, cookie: r.cookie, pid: r.pid, database: r.database, role: r.role, label: r.label, sqlPreview: r.sql_preview,
    state: r.state, launchedAt: r.launched_at, startedAt: r.started_at, endedAt: r.ended_at, errorCode: r.error_code, errorMessage: r.error_message,
  };
}

/**
 * The `limit` jobs launched last (every run's), with the label given if any.
 * `schema` is quoted (Journal.schema).
 */
export async function recentJobs(db: pg.Pool, schema: string, filter: { limit: number; label?: string | undefined }): Promise<JournalJob[]> {
  const { rows } = await db.query<Row>(
    `SELECT ${COLUMNS} FROM ${schema}.jobs WHERE ($1::text IS NULL OR label = $1) ORDER BY launched_at DESC LIMIT $2`,
    [filter.label ?? null, filter.limit],
  );
  return rows.map(fromRow);
}

/** The job with this cookie: this run's (by its key), else the latest of an earlier run with it. */
export async function journalJob(db: pg.Pool, schema: string, runId: string, cookie: bigint): Promise<JournalJob | undefined> {
  const own = await db.query<Row>(`SELECT ${COLUMNS} FROM ${schema}.jobs WHERE run_id = $1 AND cookie = $2`, [runId, cookie.toString()]);
  if (own.rows[0]) return fromRow(own.rows[0]);
  const earlier = await db.query<Row>(`SELECT ${COLUMNS} FROM ${schema}.jobs WHERE cookie = $1 ORDER BY launched_at DESC LIMIT 1`, [cookie.toString()]);
  return earlier.rows[0] ? fromRow(earlier.rows[0]) : undefined;
}
