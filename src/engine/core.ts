/**
 * What sessions and job execution share with the engine: TrackedJob and the
 * engine's services (EngineCore, which Engine implements).
 * Sessions and execute.ts depend on this module, not on engine.ts, so the
 * engine can create sessions without the two importing each other.
 */
import type { Logger } from 'pino';
import type { LaunchContext } from '../sql/launch-context.js';
import type { Login, WorkerPool } from '../workers/pool.js';
import type { WorkerConnection } from '../workers/worker.js';
import type { LoginBudgets } from './budget.js';
import type { CookieIssuer } from './cookie.js';
import type { Job } from './job.js';

/** TrackedJob = a session's handle-table entry: the Job plus what only its session knows (context, login, worker, timeout). */
export interface TrackedJob {
  readonly job: Job;
  readonly cookie: bigint;
  readonly context: LaunchContext;
  readonly login: Login;
  /** Ends a launch still waiting for a worker. */
  readonly abort: AbortController;
  /** The worker running the job, once it has one. */
  worker?: WorkerConnection | undefined;
  /** Set once execution has settled (worker released). */
  settled: Promise<void>;
  /** The worker timeout that applies, in ms (0 = none). */
  timeoutMs: number;
  /** How many of the job's notices were handed out already (deliverNotices). */
  noticesDelivered: number;
}

/** The engine as its sessions and job execution use it. */
export interface EngineCore {
  readonly logger: Logger;
  readonly pool: WorkerPool;
  readonly cookies: CookieIssuer;
  readonly budgets: LoginBudgets;
  readonly maxNoticeBytesPerJob: number;
  /** Loads the SQL parser. */
  ready(): Promise<void>;
  /** A job got its worker: it counts as running until jobEnded. */
  jobStarted(tracked: TrackedJob): void;
  jobEnded(tracked: TrackedJob): void;
  /** Cancels a job (see Session.cancel); resolves when it has ended. */
  cancelJob(tracked: TrackedJob, graceMs: number, options?: { cooperative?: boolean }): Promise<void>;
  /** True when the job's worker waits for a lock held by `pid`. */
  isBlockedBy(tracked: TrackedJob, pid: number): Promise<boolean>;
  /** The settings a fresh worker of `login` starts with, for the names given. */
  loginDefaults(login: Login, names: string[]): Promise<Map<string, string | null>>;
}
