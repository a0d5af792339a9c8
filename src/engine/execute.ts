/**
 * Runs one job on a worker: the setup statement (role, settings) and the
 * user's SQL in one round trip and one transaction; then the final state, the
 * worker timeout, and giving the connection back.
 */
import pg from 'pg';
import type { EngineCore, Entry } from './core.js';
import { errors, PgbgError, SqlState, WorkerError, type ServerMessageFields } from '../protocol/errors.js';
import type { StatementPlan } from '../sql/classify.js';
import { setupStatement } from '../sql/launch-context.js';
import { ResultTracker } from './result-tracker.js';
import type { RunOutcome, WorkerConnection } from '../workers/worker.js';

export async function executeJob(engine: EngineCore, entry: Entry, worker: WorkerConnection, plan: StatementPlan): Promise<void> {
  const { job } = entry;
  const log = engine.logger.child({ pid: job.pid });
  const timer = entry.timeoutMs > 0 ? setTimeout(() => onTimeout(engine, entry), entry.timeoutMs) : undefined;
  timer?.unref();
  job.onFirstRow = () => log.debug('first row');
  let outcome: RunOutcome;
  let prefixLength = 0;
  try {
    // The launch's answer goes out first: writing to the worker wakes its backend,
    // which took ~80 µs (p50) that the caller waited for. The job starts right after,
    // in the same turn of the event loop, before any further request is read.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (job.cancelRequested) throw canceledError(job.pid);
    const setup = setupStatement(entry.context);
    log.debug('job started');
    if (plan.mustRunAlone) {
      // VACUUM and friends refuse to run in a transaction block, so setup goes first, alone.
      await worker.query(setup);
      outcome = await worker.run(job, job.sql, new ResultTracker(job, 0, plan.statementCount));
    } else {
      const prefix = `${setup};\n`;
      prefixLength = [...prefix].length;
      const count = plan.parsed ? plan.statementCount : undefined;
      outcome = await worker.run(job, prefix + job.sql, new ResultTracker(job, 1, count));
    }
  } catch (err) {
    outcome = { error: err as Error, lost: !worker.alive };
  } finally {
    if (timer) clearTimeout(timer);
  }
  finishJob(entry, outcome, prefixLength);
  log.debug({ state: job.state, rows: job.rowsReceived, code: job.error?.code }, 'job ended');
  const reusable = !outcome.lost && outcome.txStatus === 'I';
  engine.pool.release(worker, reusable);
  engine.jobEnded(entry);
}

function finishJob(entry: Entry, outcome: RunOutcome, prefixLength: number): void {
  const { job } = entry;
  if (!outcome.error) {
    job.finish('stopped');
    return;
  }
  if (job.cancelRequested) {
    job.finish('canceled', entry.timedOut ? timeoutError(entry) : canceledError(job.pid));
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

function timeoutError(entry: Entry): PgbgError {
  return new PgbgError(SqlState.queryCanceled, 'canceling statement due to pg_background.worker_timeout', {
    detail: `The background worker with PID ${entry.job.pid} ran longer than ${entry.timeoutMs} ms.`,
    workerPid: entry.job.pid,
  });
}

function onTimeout(engine: EngineCore, entry: Entry): void {
  if (entry.job.ended) return;
  entry.timedOut = true;
  engine.logger.debug({ pid: entry.job.pid, timeoutMs: entry.timeoutMs }, 'worker timeout: canceling');
  void engine.cancelJob(entry, 1000).catch((err: unknown) => {
    engine.logger.warn({ pid: entry.job.pid, err: (err as Error).message }, 'could not cancel a timed-out job');
  });
}
