/**
 * What a worker inherits from its launcher: the current role and the session
 * settings in force at launch (search_path, TimeZone, DateStyle, application
 * settings like `myapp.tenant`, …). Captured with one query on the launcher's
 * connection and applied in the worker by one statement that runs in the same
 * transaction as the job, so a failure to take the role aborts the job before
 * any of its SQL runs.
 */
import pg from 'pg';
import { WORKER_MARKER_SETTING } from '../protocol/progress.js';
import { CARRIED_SETTINGS } from './carried-settings.js';

export interface LaunchContext {
  /** Role the worker takes (SET ROLE); undefined = the login user itself. */
  role?: string | undefined;
  /** OID of the effective role, for listings (pg_background_list_v2's user_id). */
  roleOid?: number | undefined;
  /** Session settings to apply, by name. */
  settings: Record<string, string>;
  /** The launcher's statement_timeout in ms (the fallback worker timeout). */
  statementTimeoutMs: number;
  /** The launcher's backend pid, when it is a PostgreSQL session (for self-deadlock detection). */
  launcherPid?: number | undefined;
}

/**
 * Settings a worker must not copy: identity (taken separately and checked by
 * the server), connection-level ones, per-transaction ones, and
 * statement_timeout (pgbg enforces the worker timeout itself).
 */
const NOT_COPIED = [
  'role', 'session_authorization', 'is_superuser', 'client_encoding', 'application_name',
  'statement_timeout', 'transaction_isolation', 'transaction_read_only', 'transaction_deferrable',
  'default_transaction_read_only_override', WORKER_MARKER_SETTING,
];

/** One query: the effective role, the carried settings, the timeout, the pid. */
export const CAPTURE_SQL = `SELECT current_user AS role,
  session_user AS login,
  (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) AS role_oid,
  pg_catalog.pg_backend_pid() AS pid,
  pg_catalog.current_setting('statement_timeout') AS statement_timeout,
  (SELECT pg_catalog.json_object_agg(n, v) FROM (
     SELECT n, pg_catalog.current_setting(n, true) AS v FROM pg_catalog.unnest($1::text[]) AS n) s
   WHERE v IS NOT NULL) AS settings`;

interface CaptureRow {
  role: string;
  login: string;
  role_oid: number;
  pid: number;
  statement_timeout: string;
  settings: Record<string, string> | null;
}

export function contextFromCapture(row: CaptureRow, parseTime: (s: string) => number): LaunchContext {
  return {
    role: row.role === row.login ? undefined : row.role,
    roleOid: Number(row.role_oid),
    settings: row.settings ?? {},
    statementTimeoutMs: parseTime(row.statement_timeout),
    launcherPid: row.pid,
  };
}

/**
 * Captures the launcher's context: its role, and the carried settings plus the
 * application settings (`myapp.tenant`) named in `customSettings`; with a
 * prepared statement unless `prepared` is false.
 */
export async function captureLaunchContext(
  client: pg.ClientBase,
  parseTime: (s: string) => number,
  { customSettings = [], prepared = true }: { customSettings?: readonly string[]; prepared?: boolean } = {},
): Promise<LaunchContext> {
  const names = [...CARRIED_SETTINGS, ...customSettings.filter((n) => !NOT_COPIED.includes(n))];
  if (!prepared) return contextFromCapture((await client.query<CaptureRow>(CAPTURE_SQL, [names])).rows[0]!, parseTime);
  try {
    return contextFromCapture((await captureQuery(client, names)).rows[0]!, parseTime);
  } catch (err) {
    // The launcher's session dropped our statement (DISCARD ALL, DEALLOCATE ALL, or a pooler
    // that moved it to another server connection): prepare it again under a new name.
    if ((err as { code?: string }).code !== INVALID_STATEMENT_NAME) throw err;
    generations.set(client, (generations.get(client) ?? 0) + 1);
    return contextFromCapture((await captureQuery(client, names)).rows[0]!, parseTime);
  }
}

const INVALID_STATEMENT_NAME = '26000';
/** Per launcher connection: how many times its prepared capture statement had to be made again. */
const generations = new WeakMap<pg.ClientBase, number>();

/**
 * A named statement: the launcher's backend parses and plans the capture once per
 * connection instead of on every launch (its CPU per capture ~0.33 → ~0.12 ms).
 */
function captureQuery(client: pg.ClientBase, names: string[]): Promise<pg.QueryResult<CaptureRow>> {
  const name = `pgbg_capture_launch_context_${generations.get(client) ?? 0}`;
  return client.query<CaptureRow>({ name, text: CAPTURE_SQL, values: [names] });
}

/**
 * The statement a worker runs first: take the role, apply the settings, mark
 * itself as a worker. set_config('role', …) checks membership exactly like SET
 * ROLE, so a launcher cannot hand its worker a role it could not take itself.
 */
export function setupStatement(ctx: LaunchContext, applicationName?: string): string {
  const calls: string[] = [];
  if (applicationName !== undefined) calls.push(setConfig('application_name', applicationName));
  if (ctx.role !== undefined) calls.push(setConfig('role', ctx.role));
  for (const [name, value] of Object.entries(ctx.settings)) {
    if (NOT_COPIED.includes(name)) continue;
    calls.push(setConfig(name, value));
  }
  calls.push(setConfig(WORKER_MARKER_SETTING, 'on'));
  return `SELECT ${calls.join(', ')}`;
}

function setConfig(name: string, value: string): string {
  return `pg_catalog.set_config(${pg.escapeLiteral(name)}, ${pg.escapeLiteral(value)}, false)`;
}
