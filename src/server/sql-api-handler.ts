/**
 * Serves the SQL API's requests on the wire endpoint. Who calls is never taken
 * from a request's body:
 *  - the connection logged in as one role (`r<oid>`, with that role's secret);
 *  - every request carries a proof made with the same role's secret, bound to
 *    the connection's nonce and used once (request-proof.ts), so code that merely
 *    finds the connection in the caller's backend cannot use it;
 *  - jobs run on workers that log in as that role itself, by OID.
 * Each caller backend (bound by `hello`, checked against pg_stat_activity) has
 * one engine session, shared by the roles that call from it, as pg_background
 * keeps one table of handles per backend; a role may touch only the jobs of roles
 * whose privileges it has. A session ends when the last wire connection of its
 * backend closes — the backend ended — so its jobs finish and their results are
 * discarded, as with pg_background.
 */
import type pg from 'pg';
import type { Engine } from '../engine/engine.js';
import { errors, PgbgError, SqlState } from '../protocol/errors.js';
import type { Session } from '../engine/session.js';
import type { HandleRef, JobSnapshot, RawResult } from '../engine/types.js';
import { makeLogin, type Login } from '../workers/pool.js';
import type { WireConnection, WireHandler, WireResult } from './wire.js';
import { answerMac, badProof, helloApplicationName, parseSignedRequest, proofIsValid, replayedRequest, type SignedRequest } from './request-proof.js';
import type { RoleKey, RoleKeys } from './role-keys.js';
import { notARequest, parseRequest, type Request } from './sql-api-requests.js';
import { answerV2, isV2Request, listState, type LaunchRequest, type V2Caller } from './sql-api-v2.js';
import type { Handle } from '../engine/types.js';
import { cutBytes } from '../util/bytes.js';

/** Worker credentials for a database and login role; undefined when the server has none. */
export type CredentialsFor = (database: string, user: string) => pg.ClientConfig | undefined;

/** Caller = one wire connection after its hello: its role, its nonce, the last sequence number it used, and its backend. */
interface Caller {
  roleOid: number;
  nonce: string;
  lastSeq: bigint;
  backend: CallerBackend;
}

/** A verified request: its role, and what the server vouches for its answer with. */
interface Verified {
  role: RoleKey;
  seq: bigint;
}

/** CallerBackend = the PostgreSQL backend callers call from, and its engine Session, shared by the roles that call from it. */
interface CallerBackend {
  key: string;
  session: Session;
  /** The caller's backend pid: lets the engine detect a caller waiting on its own lock. */
  backendPid: number;
  /** Its wire connections open now: the session ends with the last. */
  connections: number;
}

/** The role OID of an endpoint login, or undefined. */
export function roleOfLogin(user: string): number | undefined {
  const m = /^r([1-9]\d{0,9})$/.exec(user);
  const oid = m ? Number(m[1]) : NaN;
  return Number.isSafeInteger(oid) && oid <= 0xffffffff ? oid : undefined;
}

/** Requests that wait for a job (its end, or its first row) as long as it takes. */
const WAITING_OPS: ReadonlySet<Request['op']> = new Set(['wait', 'wait_timeout', 'wait_for', 'wait_any', 'drain', 'run', 'run_query']);

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
const JSONB = 3802;

export interface SqlApiHandlerOptions {
  engine: Engine;
  credentialsFor: CredentialsFor;
  keys: RoleKeys;
  /** Told the op of every well-formed request, before it is verified (the server's metrics). */
  onRequest?: (op: Request['op']) => void;
}

export class SqlApiHandler implements WireHandler {
  readonly #backends = new Map<string, CallerBackend>();
  readonly #logins = new Map<string, Login>();
  /** Nonces of the connections open now: a second hello with one is refused. */
  readonly #nonces = new Set<string>();
  readonly #engine: Engine;
  readonly #credentialsFor: CredentialsFor;
  readonly #keys: RoleKeys;
  readonly #onRequest: ((op: Request['op']) => void) | undefined;

  constructor(options: SqlApiHandlerOptions) {
    this.#onRequest = options.onRequest;
    this.#engine = options.engine;
    this.#credentialsFor = options.credentialsFor;
    this.#keys = options.keys;
  }

  async query(text: string, conn: WireConnection, signal: AbortSignal): Promise<WireResult | WireResult[]> {
    const signed = parseSignedRequest(text);
    if (!signed) throw notARequest();
    const req = parseRequest(signed.body);
    this.#onRequest?.(req.op);
    const roleOid = roleOfLogin(conn.user);
    if (roleOid === undefined) throw badProof();
    const caller = conn.state.get('caller') as Caller | undefined;
    if (req.op === 'hello') return this.#hello(req, signed, roleOid, conn);
    if (!caller) throw new PgbgError('08P01', 'pgbg SQL API request before hello');
    // A caller that gives up while its request is still being verified (a key re-read waiting on
    // the database) gets its answer at once, and the request never runs.
    const role = await unlessAborted(this.#verify(signed, caller, conn.database), signal);
    signal.throwIfAborted();
    const worded = (err: unknown) => {
      throw req.api === '2.0' ? as20(err) : err;
    };
    if (req.op === 'describe_result') return this.#describeResult(req, caller, { role, seq: signed.seq }, signal).catch(worded);
    const answer = this.#dispatch(req, caller, role, conn.database, signal).catch(worded);
    // A caller that gave up waiting (statement_timeout, Ctrl-C) cancels its request so that its
    // connection is free for the next one; the job itself is not touched.
    return WAITING_OPS.has(req.op) ? unlessAborted(answer, signal) : answer;
  }

  onClose(conn: WireConnection): void {
    const caller = conn.state.get('caller') as Caller | undefined;
    if (!caller) return;
    this.#nonces.delete(caller.nonce);
    const { backend } = caller;
    backend.connections--;
    if (backend.connections === 0 && this.#backends.get(backend.key) === backend) {
      this.#backends.delete(backend.key);
      backend.session.close();
    }
  }

  get sessionCount(): number {
    return this.#backends.size;
  }

  /** The request's role, once its proof and sequence number are good. */
  async #verify(signed: SignedRequest, caller: Caller, database: string): Promise<RoleKey> {
    const key = await this.#keys.current(database, caller.roleOid);
    if (!key || !proofIsValid(signed, caller.nonce, key.proofKey)) throw badProof();
    if (signed.seq <= caller.lastSeq) throw replayedRequest();
    caller.lastSeq = signed.seq;
    return key;
  }

  async #hello(req: Extract<Request, { op: 'hello' }>, signed: SignedRequest, roleOid: number, conn: WireConnection): Promise<WireResult> {
    if (conn.state.has('caller')) throw new PgbgError(SqlState.insufficientPrivilege, 'this connection already belongs to a caller');
    const key = await this.#keys.current(conn.database, roleOid);
    if (!key || !proofIsValid(signed, req.nonce, key.proofKey)) throw badProof();
    if (this.#nonces.has(req.nonce)) throw new PgbgError(SqlState.invalidAuthorization, 'this nonce belongs to another connection');
    // The hello comes from that backend: while it waits for the answer, the backend shows the
    // hash of the connection's nonce as its application_name (which only code running in it can
    // set, and which does not tell the nonce to whoever watches pg_stat_activity).
    const shown = await this.#keys.backendApplicationName(conn.database, req.backend_pid);
    if (shown !== helloApplicationName(req.nonce)) {
      throw new PgbgError(SqlState.invalidAuthorization, `the hello does not come from backend ${req.backend_pid} of database "${conn.database}"`);
    }
    // A backend's connections all close when it ends, and its session with them: a later backend
    // given the same pid starts a new one.
    const backendKey = `${conn.database}\u0000${req.backend_pid}`;
    let backend = this.#backends.get(backendKey);
    if (!backend) {
      backend = { key: backendKey, session: this.#engine.session({ connection: { database: conn.database } }), backendPid: req.backend_pid, connections: 0 };
      this.#backends.set(backendKey, backend);
    }
    backend.connections++;
    conn.state.set('caller', { roleOid, nonce: req.nonce, lastSeq: signed.seq, backend } satisfies Caller);
    this.#nonces.add(req.nonce);
    return { commandTag: 'HELLO' };
  }

  /** The login a role's workers use: the role itself, found by OID, never another. */
  #loginFor(database: string, role: RoleKey): Login {
    if (!role.canLogin) {
      throw new PgbgError(SqlState.invalidAuthorization, `role "${role.name}" cannot log in, so pgbg cannot run a job as it`, {
        detail: 'A job runs as the role of the code that launches it (current_user), logged in as that role itself.',
        hint: 'Launch from a role with LOGIN, or give this role LOGIN (and the server credentials for it).',
      });
    }
    const cacheKey = `${database}\u0000${role.roleOid}\u0000${role.name}`;
    let login = this.#logins.get(cacheKey);
    if (!login) {
      const credentials = this.#credentialsFor(database, role.name);
      if (!credentials) {
        throw new PgbgError(SqlState.invalidAuthorization, `pgbg has no credentials for role "${role.name}"`, {
          hint: 'Give the server credentials for this role (pgpass file or mapping); it never falls back to another login.',
        });
      }
      login = makeLogin({ ...credentials, database }, { roleOid: role.roleOid });
      this.#logins.set(cacheKey, login);
    }
    return login;
  }

  /**
   * The columns once the job has ended or filled its queue, and with them —
   * when the job has ended and its rows are few — the rows, as a second result
   * set in the same answer. Otherwise (`inline` false) the wrapper streams the
   * rows with a `result` request. Waiting gives way to a cancel.
   */
  async #describeResult(req: Extract<Request, { op: 'describe_result' }>, caller: Caller, verified: Verified, signal: AbortSignal): Promise<WireResult | WireResult[]> {
    const { session } = caller.backend;
    await this.#checkOwner(session, req.pid, verified.role);
    const ready = await unlessAborted(session.resultWhenReady(ref(req), { inlineBytes: INLINE_RESULT_BYTES }), signal);
    const pending = String(ready.undeliveredNotices);
    const inline = ready.rows !== undefined;
    // The wrapper builds its column list from these types, so they must be seen to be ours.
    const vouched = `${ready.fields.map((f, i) => `${i + 1}:${f.dataTypeID}`).join(',')};${pending};${inline ? 't' : 'f'}`;
    const mac = answerMac(verified.role.proofKey, caller.nonce, verified.seq, vouched);
    const columns = rows(
      [['position', INT4], ['name', TEXT], ['type_oid', OID], ['notices', INT4], ['inline', BOOL], ['mac', TEXT]],
      ready.fields.map((f, i) => [String(i + 1), f.name, String(f.dataTypeID), pending, inline ? 't' : 'f', mac]),
      'SELECT',
    );
    return ready.rows ? [columns, relayed(ready.rows)] : columns;
  }

  /** A caller whose role lacks the owner role's privileges may not touch its worker. */
  async #checkOwner(session: Session, pid: number, role: RoleKey): Promise<void> {
    const owner = session.owner(pid);
    // Unknown or consumed handles get their own errors from the operation.
    if (owner && !(await this.#mayTouch(owner.roleOid, owner.login, role))) throw errors.permissionDenied(pid);
  }

  async #mayTouch(owner: number | undefined, login: Login, role: RoleKey): Promise<boolean> {
    if (owner === undefined || owner === role.roleOid) return true;
    return this.#engine.hasPrivilegesOf(login, role.roleOid, owner);
  }

  /**
   * A launch for the caller: its role's login, its settings, its backend (for the deadlock check).
   * A caller that gives up (cancels the request, or its backend ends) while the launch waits
   * for a worker abandons it: the job never runs.
   */
  async #launch(op: 'launch' | 'submit', req: LaunchRequest, caller: Caller, role: RoleKey, database: string, signal: AbortSignal): Promise<Handle> {
    const { session } = caller.backend;
    const login = this.#loginFor(database, role);
    const context = {
      roleOid: role.roleOid,
      settings: await session.changedSettings(req.settings, login),
      statementTimeoutMs: req.statement_timeout_ms,
      launcherPid: caller.backend.backendPid,
    };
    return session[op](req.sql, { queueSize: req.queue_size, context, login, label: req.label, signal });
  }

  /** True when the caller has the privileges of the job's owner role (so it may see and touch it). */
  async #visible(session: Session, pid: number, role: RoleKey): Promise<boolean> {
    const owner = session.owner(pid);
    return owner !== undefined && (await this.#mayTouch(owner.roleOid, owner.login, role));
  }

  async #dispatch(req: Exclude<Request, { op: 'hello' | 'describe_result' }>, caller: Caller, role: RoleKey, database: string, signal: AbortSignal): Promise<WireResult> {
    const { backend } = caller;
    const session = backend.session;
    if ('max_workers' in req) applySettings(session, req);
    if ('pid' in req) await this.#checkOwner(session, req.pid, role);
    if (isV2Request(req)) {
      const v2: V2Caller = {
        session,
        mayTouch: (pid) => this.#visible(session, pid, role),
        launch: (op, launch) => this.#launch(op, launch, caller, role, database, signal),
      };
      const answer = await answerV2(req, v2);
      return req.op === 'record_timeout' ? { commandTag: 'RECORD TIMEOUT' } : json(answer);
    }
    switch (req.op) {
      case 'launch':
      case 'submit': {
        const h = await this.#launch(req.op, req, caller, role, database, signal);
        return one([['pid', INT4], ['cookie', INT8]], [String(h.pid), String(h.cookie)]);
      }
      case 'result':
        return relayed(await session.rawResult(ref(req)));
      case 'notices': {
        // dblink does not pass remote notices on: the wrapper asks for them after the rows or a wait, and raises them.
        // They count as handed out once the answer went out: a caller that gave up first gets them with the result.
        signal.throwIfAborted();
        const pending = session.pendingNotices(req.pid);
        const answer = rows(
          [['severity', TEXT], ['message', TEXT], ['detail', TEXT], ['hint', TEXT]],
          pending.notices.map((n) => [n.severity ?? 'NOTICE', n.message, n.detail ?? null, n.hint ?? null]),
          'SELECT',
        );
        return { ...answer, onSent: pending.handedOut };
      }
      case 'detach':
        session.detach(ref(req));
        return { commandTag: 'DETACH' };
      case 'cancel':
        await session.cancel(ref(req), { graceMs: req.grace_ms, cooperative: req.cooperative });
        return { commandTag: 'CANCEL' };
      case 'wait':
        await session.wait(ref(req));
        return { commandTag: 'WAIT' };
      case 'wait_timeout':
        return one([['finished', BOOL]], [(await session.waitTimeout(ref(req), req.timeout_ms)) ? 't' : 'f']);
      case 'progress': {
        const p = session.progress(ref(req));
        return one([['progress_pct', INT4], ['progress_msg', TEXT]], p.pct < 0 ? [null, null] : [String(p.pct), p.message]);
      }
      case 'list': {
        // Only the jobs of roles whose privileges the caller has: others' SQL is not the caller's to see.
        const visible = [];
        for (const j of session.list()) if (await this.#visible(session, j.pid, role)) visible.push(j);
        if (req.as_json) return json(visible.map((j) => listRow20(j)));
        return rows(
          [['pid', INT4], ['cookie', INT8], ['launched_at', TIMESTAMPTZ], ['user_id', OID], ['queue_size', INT4], ['state', TEXT], ['sql_preview', TEXT], ['last_error', TEXT], ['consumed', BOOL]],
          visible.map((j) => [
            String(j.pid), String(j.cookie), j.launchedAt.toISOString(), j.roleOid === null ? null : String(j.roleOid),
            String(j.queueSize), listState(j.state), j.sqlPreview, j.lastError, j.consumed ? 't' : 'f',
          ]),
          'SELECT',
        );
      }
      case 'stats': {
        const s = session.stats();
        if (req.as_json) {
          return json({
            workers_launched: s.workersLaunched, workers_completed: s.workersCompleted, workers_failed: s.workersFailed, workers_canceled: s.workersCanceled,
            workers_timed_out: s.workersTimedOut, workers_active: s.workersActive, avg_execution_ms: s.avgExecutionMs, max_workers: s.maxWorkers,
          });
        }
        return one(
          [['workers_launched', INT8], ['workers_completed', INT8], ['workers_failed', INT8], ['workers_canceled', INT8], ['workers_active', INT4], ['avg_execution_ms', FLOAT8], ['max_workers', INT4]],
          [s.workersLaunched, s.workersCompleted, s.workersFailed, s.workersCanceled, s.workersActive, s.avgExecutionMs, s.maxWorkers].map(String),
        );
      }
      default:
        throw new PgbgError(SqlState.internalError, `unhandled SQL API request ${req.op}`);
    }
  }
}


/** A result's rows as the worker sent them, relayed without decoding. */
function relayed(raw: RawResult): WireResult {
  return { fields: raw.fields.map((f) => ({ name: f.name, typeOid: f.dataTypeID })), dataRows: raw.dataRows, commandTag: 'SELECT' };
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

function json(value: unknown): WireResult {
  return one([['answer', JSONB]], [JSON.stringify(value)]);
}

/** A row of pg_background_list (2.0): the preview in bytes, and the label. */
function listRow20(j: JobSnapshot): object {
  return {
    pid: j.pid, cookie: String(j.cookie), launched_at: j.launchedAt.toISOString(), user_id: j.roleOid, queue_size: j.queueSize,
    state: listState(j.state), sql_preview: cutBytes(j.sqlPreview, 120), last_error: j.lastError === null ? null : cutBytes(j.lastError, 512),
    consumed: j.consumed, label: j.label ?? null,
  };
}

/** 2.0 words two of 1.8's messages otherwise. */
function as20(err: unknown): unknown {
  if (!(err instanceof PgbgError)) return err;
  if (err.code === SqlState.featureNotSupported && err.message.endsWith('(submitted via submit_v2)')) {
    err.message = err.message.replace('(submitted via submit_v2)', '(submitted via pg_background_submit)');
  } else if (err.code === SqlState.configurationLimitExceeded && err.message === 'too many background workers') {
    const limit = /= (\d+)\)/.exec(err.detail ?? '')?.[1];
    if (limit) err.detail = `Current limit is ${limit} concurrent workers per session.`;
  }
  return err;
}
