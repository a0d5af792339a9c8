/**
 * One log line per job end, at info: what an operator follows a server by
 * (`journalctl -f`). Never the SQL text (it can hold passwords; the journal has
 * its preview) nor the cookie (a handle's unguessable half).
 */
import type { Logger } from 'pino';
import type { JobObserver } from '../engine/observer.js';
import type { JobSnapshot } from '../engine/types.js';

export function jobEndLog(logger: Logger): JobObserver {
  return {
    started: () => undefined,
    ended: (job: JobSnapshot) => {
      const ms = job.endedAt ? job.endedAt.getTime() - job.launchedAt.getTime() : undefined;
      logger.info({
        pid: job.pid, database: job.database, role: job.role, ...(job.label ? { label: job.label } : {}),
        state: job.state, ...(job.errorCode ? { sqlstate: job.errorCode } : {}), ms, rows: job.rowsReceived,
      }, 'job end');
    },
  };
}
