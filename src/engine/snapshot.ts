/** The one read-only view of a job that leaves the engine (list, observers, shutdown). */
import { sqlPreview } from '../sql/classify.js';
import type { TrackedJob } from './core.js';
import type { JobSnapshot } from './types.js';

export function jobSnapshot({ job, cookie, context, login }: TrackedJob): JobSnapshot {
  return {
    pid: job.pid,
    cookie,
    database: login.database,
    role: context.role ?? login.user,
    roleOid: context.roleOid ?? null,
    queueSize: job.queueSize,
    state: job.state,
    sqlPreview: sqlPreview(job.sql),
    label: job.label,
    launchedAt: job.launchedAt,
    startedAt: job.startedAt,
    endedAt: job.endedAt,
    errorCode: job.error?.code,
    errorMessage: job.error?.message,
    lastError: job.error?.message ?? null,
    consumed: job.consumed,
    progress: job.progress,
    rowsReceived: job.rowsReceived,
    bytesReceived: job.bytesReceived,
  };
}
