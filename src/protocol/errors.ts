/**
 * Every error pgbg raises carries a SQLSTATE `code`, like node-postgres'
 * DatabaseError. Errors re-raised from a worker keep every field the server sent
 * plus the worker's pid.
 */

/** The ErrorResponse / NoticeResponse fields PostgreSQL may send. */
export interface ServerMessageFields {
  severity?: string | undefined;
  code?: string | undefined;
  detail?: string | undefined;
  hint?: string | undefined;
  position?: string | undefined;
  internalPosition?: string | undefined;
  internalQuery?: string | undefined;
  where?: string | undefined;
  schema?: string | undefined;
  table?: string | undefined;
  column?: string | undefined;
  dataType?: string | undefined;
  constraint?: string | undefined;
  file?: string | undefined;
  line?: string | undefined;
  routine?: string | undefined;
}

export const FIELD_NAMES = [
  'severity', 'code', 'detail', 'hint', 'position', 'internalPosition', 'internalQuery', 'where',
  'schema', 'table', 'column', 'dataType', 'constraint', 'file', 'line', 'routine',
] as const satisfies readonly (keyof ServerMessageFields)[];

export class PgbgError extends Error implements ServerMessageFields {
  override name = 'PgbgError';
  /** SQLSTATE (five characters). */
  readonly code: string;
  severity?: string;
  detail?: string;
  hint?: string;
  position?: string;
  internalPosition?: string;
  internalQuery?: string;
  where?: string;
  schema?: string;
  table?: string;
  column?: string;
  dataType?: string;
  constraint?: string;
  file?: string;
  line?: string;
  routine?: string;
  /** The pid of the background worker that raised it, when it came from one. */
  workerPid?: number;

  constructor(code: string, message: string, fields: Omit<ServerMessageFields, 'code'> & { workerPid?: number } = {}) {
    super(message);
    this.code = code;
    this.severity = 'ERROR';
    for (const k of FIELD_NAMES) {
      if (k === 'code') continue;
      const v = fields[k];
      if (v !== undefined) this[k] = v;
    }
    if (fields.workerPid !== undefined) this.workerPid = fields.workerPid;
  }
}

/** A worker's error as the server sent it, with the worker pid added to its context. */
export class WorkerError extends PgbgError {
  override name = 'WorkerError';
  static from(source: ServerMessageFields & { message: string }, workerPid: number): WorkerError {
    const fields: ServerMessageFields & { workerPid: number } = { workerPid };
    for (const k of FIELD_NAMES) if (k !== 'code' && source[k] !== undefined) fields[k] = source[k];
    const context = `background worker, pid ${workerPid}`;
    fields.where = source.where ? `${source.where}\n${context}` : context;
    return new WorkerError(source.code ?? 'XX000', source.message, fields);
  }
}

/** SQLSTATEs pgbg raises itself (the spec's error table, plus a few of our own). */
export const SqlState = {
  undefinedObject: '42704',
  objectNotInPrerequisiteState: '55000',
  featureNotSupported: '0A000',
  insufficientPrivilege: '42501',
  configurationLimitExceeded: '53400',
  programLimitExceeded: '54000',
  invalidParameterValue: '22023',
  syntaxError: '42601',
  stringDataRightTruncation: '22001',
  nullValueNotAllowed: '22004',
  datatypeMismatch: '42804',
  connectionFailure: '08006',
  insufficientResources: '53000',
  outOfMemory: '53200',
  queryCanceled: '57014',
  deadlockDetected: '40P01',
  invalidAuthorization: '28000',
  internalError: 'XX000',
} as const;

export const errors = {
  notAttached: (pid: number) => new PgbgError(SqlState.undefinedObject, `PID ${pid} is not attached to this session`),
  cookieMismatch: (pid: number) =>
    new PgbgError(SqlState.objectNotInPrerequisiteState, `cookie mismatch for PID ${pid}`, {
      hint: 'The worker may have been restarted or the handle is stale.',
    }),
  consumed: (pid: number) => new PgbgError(SqlState.undefinedObject, `results for PID ${pid} have already been consumed`),
  resultsDisabled: (pid: number) =>
    new PgbgError(SqlState.featureNotSupported, `results are disabled for PID ${pid} (submitted via submit_v2)`),
  rowsDroppedByCancel: (pid: number) =>
    new PgbgError(SqlState.objectNotInPrerequisiteState, `results for PID ${pid} were dropped by a cancel`, {
      detail: 'The cancel came after the job had finished its work: the job committed, but rows its queue could not hold were dropped so that its backend could see the cancel.',
      hint: 'Read the result before canceling, or use outcome/result_info for the row count.',
    }),
  permissionDenied: (pid: number) =>
    new PgbgError(SqlState.insufficientPrivilege, `permission denied for background worker with PID "${pid}"`),
  tooManyWorkers: (limit: number) =>
    new PgbgError(SqlState.configurationLimitExceeded, 'too many background workers', {
      detail: `This session already tracks ${limit} background workers (pg_background.max_workers = ${limit}).`,
      hint: 'Read, detach or cancel finished workers, or raise pg_background.max_workers.',
    }),
  queueTooSmall: (min: number) => new PgbgError(SqlState.invalidParameterValue, `queue size must be at least ${min} bytes`),
  queueTooLarge: (max: number) => new PgbgError(SqlState.invalidParameterValue, `queue size must not exceed ${max} bytes`),
  transactionControl: () =>
    new PgbgError(SqlState.featureNotSupported, 'transaction control statements are not allowed in pg_background'),
  copy: () => new PgbgError(SqlState.featureNotSupported, 'COPY protocol not allowed in pg_background'),
  lostConnection: (pid: number, detail?: string) =>
    new PgbgError(SqlState.connectionFailure, `lost connection to worker process with PID ${pid}`, detail ? { detail } : {}),
  launchCanceled: () =>
    new PgbgError(SqlState.queryCanceled, 'the launch was canceled while it waited for a background worker', {
      detail: 'Its SQL was never sent to a worker.',
    }),
  sessionClosed: () => new PgbgError(SqlState.objectNotInPrerequisiteState, 'this pgbg session is closed'),
  noCapacity: (hint: string, detail?: string) =>
    new PgbgError(SqlState.insufficientResources, 'could not start background worker', detail ? { hint, detail } : { hint }),
  memoryBudget: (login: string, limit: number, held: number, asked: number) =>
    new PgbgError(SqlState.outOfMemory, `launching this job would exceed the memory budget of login "${login}" for queued results`, {
      detail: `Its unread results may hold ${held} bytes (their queue sizes and notices) and this launch asks for ${asked} more; the budget is ${limit} bytes (maxQueueBytesPerLogin).`,
      hint: 'Read or detach earlier results, launch with a smaller queue_size, or raise the budget (pgbg serve --max-queue-bytes-per-login).',
    }),
} as const;
