/**
 * The waits pg_background 2.0 adds: for one job with an optional timeout, and
 * for the first of several jobs to end. The engine knows the moment a job ends,
 * so neither polls.
 */
import { WAIT_TIMEOUT_MS, clamp } from './limits.js';
import type { Session } from './session.js';
import type { Handle, HandleRef } from './types.js';
import type { Job } from './job.js';

/** `timeoutMs` <= 0 waits for the end (true); > 0 at most that long (false: still running). */
export async function waitFor(session: Session, ref: HandleRef, timeoutMs: number): Promise<boolean> {
  if (timeoutMs > 0) return session.waitTimeout(ref, timeoutMs);
  await session.wait(ref);
  return true;
}

/**
 * The first handle, in the order given, whose job has ended: at once if one has,
 * else the moment one ends; undefined once `timeoutMs` (> 0) has passed. A handle
 * the session does not track (or whose cookie is wrong) never ends.
 */
export async function waitAny(session: Session, refs: readonly HandleRef[], timeoutMs: number): Promise<Handle | undefined> {
  const jobs: { handle: Handle; job: Job }[] = [];
  for (const ref of refs) {
    const tracked = session.tryTrackedJob(ref);
    if (tracked) jobs.push({ handle: { pid: tracked.job.pid, cookie: tracked.cookie }, job: tracked.job });
  }
  const deadline = timeoutMs > 0 ? Date.now() + clamp(timeoutMs, WAIT_TIMEOUT_MS) : Infinity;
  for (;;) {
    const ended = jobs.find((j) => j.job.ended);
    if (ended) return ended.handle;
    const left = deadline - Date.now();
    if (left <= 0) return undefined;
    await new Promise<void>((resolve) => {
      const timer = Number.isFinite(left) ? setTimeout(resolve, left) : undefined;
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      // Never settles when every handle is stale and there is no timeout: the caller's cancel ends the request.
      for (const j of jobs) void j.job.untilEnded().then(done);
    });
  }
}
