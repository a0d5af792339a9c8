/**
 * What the engine tells an observer about each job: enough to keep a journal
 * (the server's) without reaching into engine internals.
 */
import type { JobSnapshot } from './types.js';

/** @deprecated Use JobSnapshot. */
export type JobRecord = JobSnapshot;

/** Called on the launch path: record, queue or hand off, but never block or throw. */
export interface JobObserver {
  /** A job got its worker and its SQL is on the way. */
  started(job: JobSnapshot): void;
  /** A job reached its final state. */
  ended(job: JobSnapshot): void;
}

/**
 * One observer made of several (the server's journal and its metrics): each is
 * told in turn, and one that throws never keeps the others from hearing.
 */
export function combineObservers(...observers: (JobObserver | undefined)[]): JobObserver {
  const list = observers.filter((o): o is JobObserver => o !== undefined);
  if (list.length === 1) return list[0]!;
  const each = (tell: (o: JobObserver) => void) => {
    for (const o of list) {
      try {
        tell(o);
      } catch {
        // An observer must not throw (see JobObserver); one that does loses only its own record.
      }
    }
  };
  return {
    started: (job) => each((o) => o.started(job)),
    ended: (job) => each((o) => o.ended(job)),
  };
}
