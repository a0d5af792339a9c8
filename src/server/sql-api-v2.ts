/**
 * pg_background 2.0's operations, answered as one JSON value that the 2.0
 * wrappers turn into the surface's composite types (api-2.0.sql). Each follows
 * the 2.0 contract's semantics; where 2.0 polls, the engine's waits wake on the
 * job's end.
 */
import { PgbgError, SqlState } from '../protocol/errors.js';
import type { Session } from '../engine/session.js';
import type { TrackedJob } from '../engine/core.js';
import type { Handle, HandleRef, JobSnapshot } from '../engine/types.js';
import { waitAny, waitFor } from '../engine/waits.js';
import { isColumnDefinitionList, loadClassifier } from '../sql/classify.js';
import { cutBytes } from '../util/bytes.js';
import type { Request } from './sql-api-requests.js';

const V2_OP_NAMES = [
  'run', 'run_query', 'info', 'outcome', 'progress_info', 'wait_for', 'wait_any', 'drain', 'detach_all', 'cancel_all', 'purge', 'record_timeout', 'cancel_by_label',
] as const;
export type V2Request = Request & { op: (typeof V2_OP_NAMES)[number] };
export type LaunchRequest = Extract<Request, { op: 'launch' | 'submit' | 'run' | 'run_query' }>;

export function isV2Request(req: Request): req is V2Request {
  return (V2_OP_NAMES as readonly string[]).includes(req.op);
}

/** What the operations need of the SQL API handler: the caller's session, its privileges, its launches. */
export interface V2Caller {
  session: Session;
  /** True when the caller has the privileges of the job's owner role. */
  mayTouch(pid: number): Promise<boolean>;
  launch(op: 'launch' | 'submit', req: LaunchRequest): Promise<Handle>;
}

/** How long run and run_query give an overrunning job to stop before its backend is terminated. */
const RUN_CANCEL_GRACE_MS = 1000;
const FULL_SQL_BYTES = 65536;
const ERROR_TEXT_BYTES = 255;
const NAME_BYTES = 63;

export async function answerV2(req: V2Request, caller: V2Caller): Promise<unknown> {
  const { session } = caller;
  switch (req.op) {
    case 'info':
      return info(session.trackedJob(ref(req)));
    case 'outcome': {
      const tracked = session.tryTrackedJob(ref(req));
      return tracked ? outcome(tracked) : null;
    }
    case 'progress_info': {
      const p = session.tryTrackedJob(ref(req))?.job.progress;
      return p && p.pct >= 0 ? { progress_pct: p.pct, progress_msg: cutBytes(p.message ?? '', NAME_BYTES) } : null;
    }
    case 'wait_for':
      return { finished: await waitFor(session, ref(req), req.timeout_ms) };
    case 'wait_any': {
      const h = await waitAny(session, req.handles.map(ref), req.timeout_ms);
      return h ? { pid: h.pid, cookie: String(h.cookie) } : null;
    }
    case 'drain':
      return drain(session, req.handles.map(ref), req.timeout_ms);
    case 'detach_all':
      return { count: await each(caller, () => true, (j) => session.detach(j)) };
    case 'purge':
      return { count: await each(caller, (j) => j.state !== 'starting' && j.state !== 'running', (j) => session.detach(j)) };
    case 'cancel_all':
      return { count: await each(caller, (j) => !session.trackedJob(j).job.canceling && j.state !== 'canceled', (j) => session.cancel(j, { cooperative: true })) };
    case 'cancel_by_label': {
      const like = likePattern(req.pattern);
      const matches = (j: JobSnapshot) => j.label !== undefined && like.test(j.label);
      return { count: await each(caller, matches, (j) => session.cancel(j, { graceMs: req.grace_ms, cooperative: true })) };
    }
    case 'record_timeout':
      session.recordTimeout();
      return null;
    case 'run':
      return run(req, caller);
    case 'run_query':
      return runQuery(req, caller);
  }
}

/** The visible handles (those whose owner role the caller has the privileges of) that `pick` takes, each `act`ed on in turn. */
async function each(caller: V2Caller, pick: (j: JobSnapshot) => boolean, act: (j: Handle) => unknown): Promise<number> {
  let n = 0;
  for (const j of caller.session.list()) {
    if (!(await caller.mayTouch(j.pid)) || !pick(j)) continue;
    await act(j);
    n++;
  }
  return n;
}

/** result_info, error_info and full_sql in one answer. */
function info({ job }: TrackedJob): object {
  const last = job.error ? undefined : job.commandTags.at(-1);
  const tag = splitCommandTag(last);
  const e = job.error;
  return {
    row_count: tag.rows,
    command_tag: tag.command,
    completed: job.ended,
    has_error: e !== undefined,
    started_at: job.startedAt?.toISOString() ?? null,
    finished_at: job.ended ? (job.endedAt?.toISOString() ?? null) : null,
    error: e
      ? {
          sqlstate: e.code,
          message: text(e.message, ERROR_TEXT_BYTES),
          detail: text(e.detail, ERROR_TEXT_BYTES),
          hint: text(e.hint, ERROR_TEXT_BYTES),
          context: text(e.where, ERROR_TEXT_BYTES),
          schema_name: text(e.schema, NAME_BYTES),
          table_name: text(e.table, NAME_BYTES),
          column_name: text(e.column, NAME_BYTES),
          constraint_name: text(e.constraint, NAME_BYTES),
        }
      : null,
    full_sql: job.sql === '' ? null : Buffer.byteLength(job.sql) > FULL_SQL_BYTES ? `${cutBytes(job.sql, FULL_SQL_BYTES)}[...]` : job.sql,
  };
}

/** A handle's snapshot as pg_background_outcome shows it (pid and cookie are the caller's). */
function outcome(tracked: TrackedJob): Record<string, unknown> {
  const { job } = tracked;
  const i = info(tracked) as { row_count: number; command_tag: string };
  return {
    pid: job.pid,
    cookie: String(tracked.cookie),
    state: listState(job.state),
    consumed: job.consumed,
    completed: job.ended,
    has_error: job.error !== undefined,
    row_count: i.row_count,
    command_tag: i.command_tag,
    sqlstate: job.error?.code ?? null,
    error_message: job.error ? text(job.error.message, ERROR_TEXT_BYTES) : null,
    label: job.label ?? null,
    launched_at: job.launchedAt.toISOString(),
  };
}

/**
 * Per handle, in order: wait (one budget for all when `timeoutMs` > 0), its
 * outcome, detach. Handles reached after the budget are reported unwaited and
 * stay tracked; a stale handle raises, or with no budget reports NULLs.
 */
async function drain(session: Session, refs: HandleRef[], timeoutMs: number): Promise<unknown[]> {
  const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : undefined;
  const out: unknown[] = [];
  for (const r of refs) {
    const tracked = session.tryTrackedJob(r);
    if (!tracked) {
      if (deadline !== undefined) session.trackedJob(r);
      out.push({ pid: r.pid, cookie: String(r.cookie) });
      continue;
    }
    const left = deadline === undefined ? 0 : deadline - Date.now();
    const finished = deadline === undefined || left > 0 ? await waitFor(session, r, deadline === undefined ? 0 : left) : tracked.job.ended;
    out.push(outcome(tracked));
    if (finished) session.detach(r);
  }
  return out;
}

/** Launch, wait, and on overrun cancel and count; the handle is left to the caller only for run_query's rows. */
async function launchAndWait(req: LaunchRequest & { timeout_ms: number }, caller: V2Caller, op: 'launch' | 'submit'): Promise<{ handle: Handle; tracked: TrackedJob; timedOut: boolean }> {
  const { session } = caller;
  const handle = await caller.launch(op, req);
  const tracked = session.trackedJob(handle);
  // run_query's rows stall a job whose queue is full: it is then ready to be read.
  const ready = op === 'submit' ? waitFor(session, handle, req.timeout_ms) : untilReadable(tracked, req.timeout_ms);
  const timedOut = !(await ready);
  if (timedOut) {
    await session.cancel(handle, { graceMs: RUN_CANCEL_GRACE_MS, cooperative: true });
    session.recordTimeout();
  }
  return { handle, tracked, timedOut };
}

/** Until the job has ended or filled its queue (its rows can be read); false when `timeoutMs` (> 0) passed first. */
async function untilReadable({ job }: TrackedJob, timeoutMs: number): Promise<boolean> {
  const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : Infinity;
  while (!job.ended && !job.stalled) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([job.changed(), new Promise<void>((resolve) => (timer = Number.isFinite(left) ? setTimeout(resolve, left) : undefined))]);
    clearTimeout(timer);
  }
  return true;
}

async function run(req: V2Request & { op: 'run' }, caller: V2Caller): Promise<object> {
  const started = Date.now();
  const { handle, tracked, timedOut } = await launchAndWait(req, caller, 'submit');
  const snapshot = outcome(tracked);
  caller.session.detach(handle);
  return { ...snapshot, timed_out: timedOut, elapsed_ms: Date.now() - started };
}

async function runQuery(req: V2Request & { op: 'run_query' }, caller: V2Caller): Promise<object> {
  await loadClassifier();
  if (req.col_def !== null && !isColumnDefinitionList(req.col_def)) {
    throw new PgbgError(SqlState.syntaxError, 'col_def must be a column definition list', {
      detail: 'pg_background_run_query takes the list as in "AS r(n int, t text)", nothing else.',
    });
  }
  const { handle, tracked, timedOut } = await launchAndWait(req, caller, 'launch');
  const e = tracked.job.error;
  const answer = { pid: handle.pid, cookie: String(handle.cookie), timed_out: timedOut, sqlstate: e ? (e.code || 'XX000') : null, error_message: e?.message ?? null };
  if (timedOut || e || req.col_def === null) caller.session.detach(handle);
  return answer;
}

/** 1.8 and 2.0 show a canceled or failed worker as `stopped`. */
export function listState(state: JobSnapshot['state']): string {
  return state === 'canceled' || state === 'error' ? 'stopped' : state;
}

/** INSERT 0 5 → (INSERT, 5); a tag without a count → (tag, 0); none → ('', 0). */
export function splitCommandTag(tag: string | undefined): { command: string; rows: number } {
  if (!tag) return { command: '', rows: 0 };
  const m = /^(INSERT) \d+ (\d+)$|^(SELECT|UPDATE|DELETE|MERGE|FETCH|MOVE|COPY) (\d+)$/.exec(tag);
  if (!m) return { command: tag, rows: 0 };
  return { command: (m[1] ?? m[3])!, rows: Number(m[2] ?? m[4]) };
}

/** SQL LIKE (`%`, `_`, backslash escapes) as a whole-string regular expression. */
export function likePattern(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '\\' && i + 1 < pattern.length) re += escapeRegExp(pattern[++i]!);
    else if (ch === '%') re += '[\\s\\S]*';
    else if (ch === '_') re += '[\\s\\S]';
    else re += escapeRegExp(ch);
  }
  return new RegExp(`^${re}$`, 'u');
}

function escapeRegExp(ch: string): string {
  return ch.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** A message field as 2.0 shows it: cut to `max` bytes on a character boundary, empty = NULL. */
function text(value: string | undefined, max: number): string | null {
  return value ? cutBytes(value, max) : null;
}

function ref(r: { pid: number; cookie?: string | undefined }): HandleRef {
  return { pid: r.pid, cookie: r.cookie === undefined ? undefined : BigInt(r.cookie) };
}
