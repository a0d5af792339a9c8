/**
 * How a worker's SQL reports progress: a NOTICE with our own SQLSTATE whose
 * detail is `{"pct": n, "msg": "..."}`. Notices are delivered while the
 * statement runs, so the launcher sees the latest value before the job ends.
 * The SQL API's `pg_background_progress(pct, msg)` raises exactly this; from
 * the library, any SQL can:
 *
 *   DO $$ BEGIN RAISE NOTICE USING MESSAGE = 'pg_background progress',
 *     DETAIL = json_build_object('pct', 50, 'msg', 'half way')::text, ERRCODE = 'PB001'; END $$
 */
export const PROGRESS_SQLSTATE = 'PB001';
export const PROGRESS_MESSAGE = 'pg_background progress';

/** Marks a connection as a pgbg worker (read by pg_background_progress). */
export const WORKER_MARKER_SETTING = 'pgbg.worker';

export function parseProgress(detail: string | undefined): { pct: number; message: string | null } | undefined {
  if (!detail) return undefined;
  try {
    const v = JSON.parse(detail) as { pct?: unknown; msg?: unknown };
    if (typeof v.pct !== 'number') return undefined;
    return { pct: v.pct, message: typeof v.msg === 'string' ? v.msg : null };
  } catch {
    return undefined;
  }
}

/** SQL that reports progress from inside a job when the SQL API is not installed. */
export function progressSql(pct: number, message?: string): string {
  const detail = JSON.stringify({ pct: Math.trunc(pct), msg: message ?? null }).replace(/'/g, "''");
  return `DO $pgbg$ BEGIN RAISE NOTICE USING MESSAGE = '${PROGRESS_MESSAGE}', DETAIL = '${detail}', ERRCODE = '${PROGRESS_SQLSTATE}'; END $pgbg$`;
}
