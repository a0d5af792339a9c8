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
