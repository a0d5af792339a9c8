/** pgbg: background SQL for PostgreSQL — the engine as a library. */
export { Engine, type EngineOptions, type SessionOptions, type ShutdownReport } from './engine/engine.js';
export type { JobObserver, JobRecord } from './engine/observer.js';
export { Session } from './engine/session.js';
export { PgbgError, WorkerError, SqlState } from './protocol/errors.js';
export type {
  Handle, HandleRef, JobInfo, JobResult, JobSnapshot, LaunchOptions, SessionSettings, SessionStats, RawResult,
  FieldInfo, JobState, Notice, Progress, RawRow,
} from './engine/types.js';
export type { LaunchContext } from './sql/launch-context.js';
export type { PoolOptions } from './workers/pool.js';
export { progressSql, PROGRESS_SQLSTATE } from './protocol/progress.js';
export { MAX_WORKERS, QUEUE_SIZE, WORKER_TIMEOUT } from './engine/limits.js';
