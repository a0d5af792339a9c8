/**
 * Runs one job on a worker: the setup statement (role, settings) and the
 * user's SQL in one round trip and one transaction; then the final state, the
 * worker timeout, and giving the connection back.
 */
import pg from 'pg';
import type { EngineCore, TrackedJob } from './core.js';
import { errors, PgbgError, SqlState, WorkerError, type ServerMessageFields } from '../protocol/errors.js';
import type { StatementPlan } from '../sql/classify.js';
import { setupStatement } from '../sql/launch-context.js';
import { ResultTracker } from './result-tracker.js';
import { cutBytes } from '../util/bytes.js';
import type { RunOutcome, WorkerConnection } from '../workers/worker.js';

export async function executeJob(engine: EngineCore, tracked: TrackedJob, worker: WorkerConnection, plan: StatementPlan): Promise<void> {
  const { job } = tracked;
  const log = engine.logger.child({ pid: job.pid });
  const timer = tracked.timeoutMs > 0 ? setTimeout(() => onTimeout(engine, tracked), tracked.timeoutMs) : undefined;
  timer?.unref();
  job.onFirstRow = () => log.debug('first row');
  let outcome: RunOutcome;
  let prefixLength = 0;
  try {
    // The launch's answer goes out first: writing to the worker wakes its backend,
    // which took ~80 µs (p50) that the caller waited for. The job starts right after,
    // in the same turn of the event loop, before any further request is read.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (job.canceling) throw canceledError(job.pid);
    const setup = setupStatement(tracked.context, workerApplicationName(job.pid, job.label));
    log.debug('job started');
    if (plan.mustRunAlone) {
      // VACUUM and friends refuse to run in a transaction block, so setup goes first, alone.
      job.start();
      await worker.query(setup);
      outcome = await worker.run(job, job.sql, new ResultTracker(job, 0, plan.statementCount));
    } else {
      const prefix = `${setup};\n`;
      prefixLength = [...prefix].length;
      const count = plan.parsed ? plan.statementCount : undefined;
      job.start();
      outcome = await worker.run(job, prefix + job.sql, new ResultTracker(job, 1, count));
    }
  } catch (err) {
    outcome = { error: err as Error, lost: !worker.alive };
  } finally {
    if (timer) clearTimeout(timer);
  }
  finishJob(tracked, outcome, prefixLength);
  log.debug({ state: job.state, rows: job.rowsReceived, code: job.error?.code }, 'job ended');
  const reusable = !outcome.lost && outcome.txStatus === 'I';
  engine.pool.release(worker, reusable);
  engine.jobEnded(tracked);
}

function finishJob(tracked: TrackedJob, outcome: RunOutcome, prefixLength: number): void {
  const { job } = tracked;
  if (!outcome.error) {
    job.finish('stopped');
    return;
  }
  const phase = job.phase;
  if (phase.name === 'canceling') {
    job.finish('canceled', phase.byTimeout ? timeoutError(tracked) : canceledError(job.pid));
    return;
  }
  const err = outcome.error;
  // The server's error, or one the worker raised for the job (COPY): reported with every field.
  if ((err instanceof pg.DatabaseError || err instanceof PgbgError) && !(outcome.lost && isConnectionLevel(err))) {
    const fields = { ...err, message: err.message };
    // Positions refer to the text the worker received; report them in the caller's SQL.
    if (fields.position && prefixLength > 0) fields.position = String(Math.max(1, Number(fields.position) - prefixLength));
    job.finish('error', WorkerError.from(fields, job.pid));
    return;
  }
  job.finish('error', errors.lostConnection(job.pid, err.message));
}

function isConnectionLevel(err: ServerMessageFields): boolean {
  return err.severity === 'FATAL' || err.severity === 'PANIC' || (err.code ?? '').startsWith('08');
}

function canceledError(pid: number): PgbgError {
  return new PgbgError(SqlState.queryCanceled, `background worker with PID ${pid} was canceled`);
}

function timeoutError(tracked: TrackedJob): PgbgError {
  return new PgbgError(SqlState.queryCanceled, 'canceling statement due to pg_background.worker_timeout', {
    detail: `The background worker with PID ${tracked.job.pid} ran longer than ${tracked.timeoutMs} ms.`,
    workerPid: tracked.job.pid,
  });
}

function onTimeout(engine: EngineCore, tracked: TrackedJob): void {
  if (tracked.job.ended) return;
  tracked.job.requestCancel(true);
  engine.logger.debug({ pid: tracked.job.pid, timeoutMs: tracked.timeoutMs }, 'worker timeout: canceling');
  void engine.cancelJob(tracked, 1000).catch((err: unknown) => {
    engine.logger.warn({ pid: tracked.job.pid, err: (err as Error).message }, 'could not cancel a timed-out job');
  });
}

/**
 * pg_background 2.0's name for a worker in pg_stat_activity: `pg_background:<label>:<pid>`, or
 * `pg_background:<pid>`, within the 63 bytes of application_name (the label is cut to fit, on a
 * character boundary). The reset between jobs puts the connection's own name back.
 */
export function workerApplicationName(pid: number, label: string | undefined): string {
  if (label === undefined) return `pg_background:${pid}`;
  const room = 63 - Buffer.byteLength(`pg_background::${pid}`);
  return `pg_background:${cutBytes(label, room)}:${pid}`;
}
