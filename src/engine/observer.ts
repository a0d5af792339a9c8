/**
 * What the engine tells an observer about each job: enough to keep a journal
 * (the server's) without reaching into engine internals.
 */
import type { Entry } from './core.js';
import { sqlPreview } from '../sql/classify.js';

export interface JobRecord {
  /** Unique for the engine's lifetime (the handle's cookie). */
  cookie: bigint;
  pid: number;
  database: string;
  /** Role the job runs as: the caller's current role, else its login. */
  role: string;
  sqlPreview: string;
  state: 'running' | 'stopped' | 'canceled' | 'error';
  launchedAt: Date;
  startedAt: Date | undefined;
  endedAt: Date | undefined;
  errorCode: string | undefined;
  errorMessage: string | undefined;
}

/** Called on the launch path: record, queue or hand off, but never block or throw. */
export interface JobObserver {
  /** A job got its worker and its SQL is on the way. */
  started(job: JobRecord): void;
  /** A job reached its final state. */
  ended(job: JobRecord): void;
}

export function jobRecord(entry: Entry): JobRecord {
  const { job, context, login } = entry;
  const state = job.state === 'stopped' || job.state === 'canceled' || job.state === 'error' ? job.state : 'running';
  return {
    cookie: entry.cookie,
    pid: job.pid,
    database: login.database,
    role: context.role ?? login.user,
    sqlPreview: sqlPreview(job.sql),
    state,
    launchedAt: job.launchedAt,
    startedAt: job.startedAt,
    endedAt: job.endedAt,
    errorCode: job.error?.code,
    errorMessage: job.error?.message,
  };
}
