/**
 * Waits that watch for a self-deadlock: the worker blocked by a lock its
 * launcher holds while the launcher waits for the worker. PostgreSQL's deadlock
 * detector cannot see it, as one of the two waits happens outside the server.
 */
import { PgbgError, SqlState } from '../protocol/errors.js';
import type { EngineCore, TrackedJob } from './core.js';

/** How often a waiting launcher checks that its worker is not blocked by the launcher's own locks. */
const DEADLOCK_CHECK_MS = 250;

/** Runs `wait`, failing with 40P01 if the job's worker turns out to wait for a lock of the launcher. */
export async function guardedWait<T>(core: EngineCore, tracked: TrackedJob, wait: () => Promise<T>): Promise<T> {
  const launcherPid = tracked.context.launcherPid;
  if (launcherPid === undefined || tracked.job.ended) return wait();
  let stop = false;
  const watchdog = (async (): Promise<never | undefined> => {
    while (!stop) {
      await delay(DEADLOCK_CHECK_MS);
      if (stop || tracked.job.ended) return undefined;
      if (await core.isBlockedBy(tracked, launcherPid)) {
        throw new PgbgError(SqlState.deadlockDetected, 'deadlock detected', {
          detail: `Process ${launcherPid} waits for background worker ${tracked.job.pid}; background worker ${tracked.job.pid} waits for a lock held by process ${launcherPid}.`,
          hint: 'Release the lock (commit or roll back) before waiting for the worker, or detach it.',
        });
      }
    }
    return undefined;
  })();
  try {
    return await Promise.race([wait(), watchdog.then(() => new Promise<never>(() => undefined))]);
  } finally {
    stop = true;
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
