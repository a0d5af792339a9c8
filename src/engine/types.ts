/** The public shapes of the engine's API. */
import type { FieldInfo, Notice } from '../protocol/messages.js';
import type { JobState, Progress, RawRow } from './job.js';
import type { LaunchContext } from '../sql/launch-context.js';
import type { Login } from '../workers/pool.js';

/** A job handle: the worker backend's pid and a cookie that guards against pid reuse. */
export interface Handle {
  readonly pid: number;
  readonly cookie: bigint;
}

/** A handle as callers pass it back: v1 callers have only the pid. */
export interface HandleRef {
  readonly pid: number;
  readonly cookie?: bigint | undefined;
}

export interface LaunchOptions {
  /** Result buffer in bytes; 0 or omitted = the session's default queue size (64 kB). */
  queueSize?: number;
  /** Identity and settings for the worker; by default captured from the session's launcher. */
  context?: LaunchContext;
  /** The login the worker uses instead of the session's (the SQL API: the calling role itself). */
  login?: Login;
  /** A name for the job, at most 64 bytes (pg_background 2.0's label): lists show it, and the worker's application_name. */
  label?: string | undefined;
  /** Called for each notice or warning the worker raises. */
  onNotice?: (notice: Notice) => void;
  /**
   * Gives the launch up while it waits for a worker (the pool at its caps): it then
   * fails with 57014 and its SQL never runs. No effect once the launch has resolved.
   */
  signal?: AbortSignal | undefined;
}

export interface SessionSettings {
  /** Most handles this session may track at once (pg_background.max_workers). @default 16 */
  maxWorkers: number;
  /** Result buffer per job when a launch asks for 0 (pg_background.default_queue_size). @default 65536 */
  defaultQueueSize: number;
  /** Cancel a job running longer than this, in ms; 0 = use the launcher's statement_timeout (pg_background.worker_timeout). @default 0 */
  workerTimeoutMs: number;
  /**
   * Application settings (placeholders such as `myapp.tenant`) to carry from the
   * launcher to its workers. PostgreSQL does not list placeholders in pg_settings,
   * so they must be named; built-in settings changed in the session are carried
   * without being named. @default []
   */
  customSettings: string[];
  /**
   * Capture the launcher's context with a prepared statement, which its backend
   * parses and plans once per connection (~0.2 ms less CPU and latency per
   * launch). Turn off behind a pooler that cannot keep prepared statements
   * (PgBouncer in transaction mode before 1.21): there a statement prepared on
   * one server connection is missing on the next, and the error would abort
   * the launcher's open transaction. @default true
   */
  preparedCapture: boolean;
}

export interface JobResult<R = Record<string, unknown>> {
  fields: FieldInfo[];
  rows: R[];
  /** Command tags of the statements whose results are returned. */
  commandTags: string[];
  notices: Notice[];
}

/** JobSnapshot = a read-only view of one job at a moment: a row of pg_background_list_v2, and what a JobObserver is told. */
export interface JobSnapshot {
  pid: number;
  /** Unique for the engine's lifetime. */
  cookie: bigint;
  database: string;
  /** Role the worker runs as (its login user when no role was taken). */
  role: string;
  roleOid: number | null;
  queueSize: number;
  state: JobState;
  /** First 120 characters of the SQL. */
  sqlPreview: string;
  /** The job's label (pg_background 2.0), if it was given one. */
  label: string | undefined;
  launchedAt: Date;
  startedAt: Date | undefined;
  endedAt: Date | undefined;
  errorCode: string | undefined;
  errorMessage: string | undefined;
  /** errorMessage as list_v2's last_error shows it. */
  lastError: string | null;
  consumed: boolean;
  /** The latest progress the job reported (pct -1 before any). */
  progress: Progress;
  /** Rows and bytes (DataRow messages) the worker sent so far. */
  rowsReceived: number;
  bytesReceived: number;
}

/** @deprecated Use JobSnapshot. */
export type JobInfo = JobSnapshot;

export interface SessionStats {
  workersLaunched: number;
  workersCompleted: number;
  workersFailed: number;
  workersCanceled: number;
  /** Jobs that overran a synchronous call's timeout, and timeouts recorded (recordTimeout). */
  workersTimedOut: number;
  workersActive: number;
  avgExecutionMs: number;
  maxWorkers: number;
}

/** Raw access to a job's result: text values and field metadata (what the SQL API relays). */
/** What Session.resultWhenReady answers. */
export interface ReadyResult {
  fields: FieldInfo[];
  /** Notices still to hand out (deliverNotices); -1 while the job runs. */
  undeliveredNotices: number;
  /** The rows, when they came along (the result is then consumed). */
  rows: RawResult | undefined;
}

export interface RawResult {
  fields: FieldInfo[];
  rows: AsyncIterable<RawRow>;
  /** The same rows, in the batches they were buffered in; read either `rows` or `batches`, not both. */
  batches: AsyncIterable<RawRow[]>;
  /** The same rows as DataRow protocol messages, as the worker sent them (what the SQL API relays); read one of the three. */
  dataRows: AsyncIterable<Buffer[]>;
  commandTags(): string[];
  notices: Notice[];
}

export type { FieldInfo, JobState, Notice, Progress, RawRow };
