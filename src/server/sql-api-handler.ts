/**
 * Serves the SQL API's requests on the wire endpoint: maps each caller backend
 * (bound by `hello`) to one engine session, and each request to one engine
 * operation. A session ends when the last wire connection of its backend
 * closes — the caller's backend ended — so its jobs finish and their results
 * are discarded, as with pg_background.
 */
import type pg from 'pg';
import type { Engine } from '../engine/engine.js';
import { errors, PgbgError, SqlState } from '../engine/errors.js';
import type { Session } from '../engine/session.js';
import type { HandleRef, Notice } from '../engine/types.js';
import type { WireConnection, WireHandler, WireResult } from './wire.js';
import { parseRequest, type Request } from './sql-api-requests.js';

/** Worker credentials for a database and login role; undefined when the server has none. */
export type CredentialsFor = (database: string, user: string) => pg.ClientConfig | undefined;

interface Bound {
  key: string;
  session: Session;
  /** The caller's backend pid: lets the engine detect a caller waiting on its own lock. */
  backendPid: number;
  /**
   * Notices of results already relayed, by pid, until the wrapper fetches them:
   * dblink does not pass remote notices on, so the wrapper re-raises them.
   */
  notices: Map<number, Notice[]>;
  /** How many of a job's notices a wait already re-raised, by pid: its result does not repeat them. */
  noticesRaised: Map<number, number>;
}

/** Requests that wait for a job (its end, or its first row) as long as it takes. */
const WAITING_OPS: ReadonlySet<Request['op']> = new Set(['wait', 'wait_timeout', 'describe', 'describe_v2']);

/** `work`'s outcome, or the abort's reason as soon as `signal` aborts (`work` then settles unobserved). */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err as Error);
      },
    );
  });
}

/**
 * Rows up to this size come in the describe_result answer itself: dblink's
 * asynchronous read holds a whole result set in memory, where its synchronous
 * call (the `result` request) streams rows into a tuplestore.
 */
const INLINE_RESULT_BYTES = 256 * 1024;

const INT4 = 23;
const INT8 = 20;
const TEXT = 25;
const BOOL = 16;
const FLOAT8 = 701;
const OID = 26;
const TIMESTAMPTZ = 1184;

export class SqlApiHandler implements WireHandler {
  readonly #sessions = new Map<string, { session: Session; connections: number }>();

  constructor(
    private readonly engine: Engine,
    private readonly credentialsFor: CredentialsFor,
  ) {}

  async query(text: string, conn: WireConnection, signal: AbortSignal): Promise<WireResult | WireResult[]> {
    const req = parseRequest(text);
    if (req.op === 'hello') return this.#hello(req, conn);
    const bound = conn.state.get('bound') as Bound | undefined;
    if (!bound) throw new PgbgError('08P01', 'pgbg SQL API request before hello');
    if (req.op === 'describe_result') return this.#describeResult(req, bound, signal);
    const answer = this.#dispatch(req, bound);
    // A caller that gave up waiting (statement_timeout, Ctrl-C) cancels its request so that its
    // connection is free for the next one; the job itself is not touched.
    return WAITING_OPS.has(req.op) ? unlessAborted(answer, signal) : answer;
  }

  onClose(conn: WireConnection): void {
    const bound = conn.state.get('bound') as Bound | undefined;
    if (!bound) return;
    const entry = this.#sessions.get(bound.key);
    if (!entry) return;
    entry.connections--;
    if (entry.connections === 0) {
      this.#sessions.delete(bound.key);
      entry.session.close();
    }
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /**
   * Since 0012: the columns once the job has ended or filled its queue, and with
   * them — when the job has ended and its rows are few — the rows, as a second
   * result set in the same answer. Otherwise (`inline` false) the wrapper streams
   * the rows with a `result` request. Waiting gives way to a cancel.
   */
  async #describeResult(req: Extract<Request, { op: 'describe_result' }>, bound: Bound, signal: AbortSignal): Promise<WireResult | WireResult[]> {
    const { session } = bound;
    if (req.role !== undefined) await this.#checkOwner(session, req.pid, req.role, req.role_oid);
    const handle = ref(req);
    const fields = await unlessAborted(session.describe(handle), signal);
    await unlessAborted(session.awaitRows(handle), signal);
    const job = session.entry(handle).job;
    const inline = job.ended && fields.length > 0 && job.bufferedBytes <= INLINE_RESULT_BYTES;
    const pending = pendingNotices(job, bound, req.pid);
    const columns = rows(
      [['position', INT4], ['name', TEXT], ['type_oid', OID], ['notices', INT4], ['inline', BOOL]],
      fields.map((f, i) => [String(i + 1), f.name, String(f.dataTypeID), pending, inline ? 't' : 'f']),
      'SELECT',
    );
    return inline ? [columns, await this.#dispatch({ ...req, op: 'result' }, bound)] : columns;
  }

  /** A caller whose current role lacks the owner role's privileges may not touch its worker. */
  async #checkOwner(session: Session, pid: number, role: string, roleOid: number | undefined): Promise<void> {
    let entry;
    try {
      entry = session.entry({ pid });
    } catch {
      return; // unknown or consumed handles get their own errors from the operation
    }
    const owner = entry.context.roleOid;
    if (owner === undefined) return;
    // Both OIDs come from the caller's backend (the wrappers): the launching role itself needs no query.
    if (roleOid === owner) return;
    if (!(await this.engine.hasPrivilegesOf(entry.login, role, owner))) throw errors.permissionDenied(pid);
  }

  #hello(req: Extract<Request, { op: 'hello' }>, conn: WireConnection): WireResult {
    if (conn.state.has('bound')) throw new PgbgError(SqlState.insufficientPrivilege, 'this connection already belongs to a caller');
    const key = `${conn.database}\u0000${req.backend_pid}\u0000${req.backend_start}`;
    let entry = this.#sessions.get(key);
    if (!entry) {
      const credentials = this.credentialsFor(conn.database, req.session_user);
      if (!credentials) {
        throw new PgbgError(SqlState.invalidAuthorization, `pgbg has no credentials for role "${req.session_user}"`, {
          hint: 'Give the server credentials for this role (pgpass file or mapping); it never falls back to another login.',
        });
      }
      entry = { session: this.engine.session({ connection: credentials }), connections: 0 };
      this.#sessions.set(key, entry);
    }
    entry.connections++;
    conn.state.set('bound', { key, session: entry.session, backendPid: req.backend_pid, notices: new Map(), noticesRaised: new Map() } satisfies Bound);
    return { commandTag: 'HELLO' };
  }

  async #dispatch(req: Exclude<Request, { op: 'hello' | 'describe_result' }>, bound: Bound): Promise<WireResult> {
    const session = bound.session;
    if ('max_workers' in req) applySettings(session, req);
    if ('pid' in req && req.role !== undefined) await this.#checkOwner(session, req.pid, req.role, req.role_oid);
    switch (req.op) {
      case 'launch':
      case 'submit': {
        const context = {
          role: req.role ?? undefined,
          roleOid: req.role_oid ?? undefined,
          settings: await session.changedSettings(req.settings),
          statementTimeoutMs: req.statement_timeout_ms,
          launcherPid: bound.backendPid,
        };
        const h = await session[req.op](req.sql, { queueSize: req.queue_size, context });
        return one([['pid', INT4], ['cookie', INT8]], [String(h.pid), String(h.cookie)]);
      }
      case 'describe': {
        // The caller builds its row type from these, then asks for the rows with `result`.
        const fields = await session.describe(ref(req));
        return rows([['position', INT4], ['name', TEXT], ['type_oid', OID]], fields.map((f, i) => [String(i + 1), f.name, String(f.dataTypeID)]), 'SELECT');
      }
      case 'describe_v2': {
        // Also: notices still to raise once the rows are read (-1 while the job runs), so
        // a job that ended quietly costs the wrapper no notices request.
        const fields = await session.describe(ref(req));
        const job = session.entry(ref(req)).job;
        const pending = pendingNotices(job, bound, req.pid);
        return rows(
          [['position', INT4], ['name', TEXT], ['type_oid', OID], ['notices', INT4]],
          fields.map((f, i) => [String(i + 1), f.name, String(f.dataTypeID), pending]),
          'SELECT',
        );
      }
      case 'result': {
        const raw = await session.rawResult(ref(req));
        const pending = raw.notices.slice(bound.noticesRaised.get(req.pid) ?? 0);
        // Kept only when there is something to fetch: a wrapper told "none" never asks.
        if (pending.length > 0) bound.notices.set(req.pid, pending);
        else bound.notices.delete(req.pid);
        bound.noticesRaised.delete(req.pid);
        return { fields: raw.fields.map((f) => ({ name: f.name, typeOid: f.dataTypeID })), dataRows: raw.dataRows, commandTag: 'SELECT' };
      }
      case 'notices': {
        const notices = bound.notices.get(req.pid) ?? [];
        bound.notices.delete(req.pid);
        return rows(
          [['severity', TEXT], ['message', TEXT], ['detail', TEXT], ['hint', TEXT]],
          notices.map((n) => [n.severity ?? 'NOTICE', n.message, n.detail ?? null, n.hint ?? null]),
          'SELECT',
        );
      }
      case 'detach':
        session.detach(ref(req));
        bound.noticesRaised.delete(req.pid);
        return { commandTag: 'DETACH' };
      case 'cancel':
        await session.cancel(ref(req), { graceMs: req.grace_ms });
        return { commandTag: 'CANCEL' };
      case 'wait': {
        await session.wait(ref(req));
        const all = session.entry(ref(req)).job.notices;
        const pending = all.slice(bound.noticesRaised.get(req.pid) ?? 0);
        if (pending.length > 0) bound.notices.set(req.pid, pending);
        bound.noticesRaised.set(req.pid, all.length);
        return { commandTag: 'WAIT' };
      }
      case 'wait_timeout':
        return one([['finished', BOOL]], [(await session.waitTimeout(ref(req), req.timeout_ms)) ? 't' : 'f']);
      case 'progress': {
        const p = session.progress(ref(req));
        return one([['progress_pct', INT4], ['progress_msg', TEXT]], p.pct < 0 ? [null, null] : [String(p.pct), p.message]);
      }
      case 'list':
        return rows(
          [['pid', INT4], ['cookie', INT8], ['launched_at', TIMESTAMPTZ], ['user_id', OID], ['queue_size', INT4], ['state', TEXT], ['sql_preview', TEXT], ['last_error', TEXT], ['consumed', BOOL]],
          session.list().map((j) => [
            String(j.pid), String(j.cookie), j.launchedAt.toISOString(), j.roleOid === null ? null : String(j.roleOid),
            String(j.queueSize), j.state, j.sqlPreview, j.lastError, j.consumed ? 't' : 'f',
          ]),
          'SELECT',
        );
      case 'stats': {
        const s = session.stats();
        return one(
          [['workers_launched', INT8], ['workers_completed', INT8], ['workers_failed', INT8], ['workers_canceled', INT8], ['workers_active', INT4], ['avg_execution_ms', FLOAT8], ['max_workers', INT4]],
          [s.workersLaunched, s.workersCompleted, s.workersFailed, s.workersCanceled, s.workersActive, s.avgExecutionMs, s.maxWorkers].map(String),
        );
      }
    }
  }
}

/** Notices still to raise once a job's rows are read; -1 while it runs (more may come). */
function pendingNotices(job: { ended: boolean; notices: readonly unknown[] }, bound: Bound, pid: number): string {
  return job.ended ? String(job.notices.length - (bound.noticesRaised.get(pid) ?? 0)) : '-1';
}

function applySettings(session: Session, req: { max_workers?: number | undefined; default_queue_size?: number | undefined; worker_timeout_ms?: number | undefined }): void {
  if (req.max_workers !== undefined) session.settings.maxWorkers = req.max_workers;
  if (req.default_queue_size !== undefined) session.settings.defaultQueueSize = req.default_queue_size;
  if (req.worker_timeout_ms !== undefined) session.settings.workerTimeoutMs = req.worker_timeout_ms;
}

function ref(req: { pid: number; cookie?: string | undefined }): HandleRef {
  return { pid: req.pid, cookie: req.cookie === undefined ? undefined : BigInt(req.cookie) };
}

function rows(columns: [string, number][], values: (string | null)[][], tag: string): WireResult {
  return { fields: columns.map(([name, typeOid]) => ({ name, typeOid })), rows: values, commandTag: `${tag} ${values.length}` };
}

function one(columns: [string, number][], values: (string | null)[]): WireResult {
  return rows(columns, [values], 'SELECT');
}
