/**
 * Turning whatever a handler throws into ErrorResponse fields.
 *
 * Errors that carry a SQLSTATE (PgbgError, node-postgres' DatabaseError, a
 * worker's re-raised error) are relayed with every field, so a dblink caller
 * sees the same code/detail/hint it would from PostgreSQL. Anything else is a
 * bug on our side: it is logged here and the client only gets XX000, because
 * its message may contain internals (paths, connection strings).
 */
import type { Logger } from 'pino';
import { FIELD_NAMES, SqlState, type ServerMessageFields } from '../protocol/errors.js';
import type { MessageFields } from './wire-messages.js';

/**
 * A SQLSTATE is five digits/uppercase letters. Requiring a digit keeps Node's
 * errno names (EPIPE, EPERM, ...) from passing as SQLSTATEs; every class
 * PostgreSQL defines contains one.
 */
export function isSqlState(code: unknown): code is string {
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && /\d/.test(code);
}

type CodedError = ServerMessageFields & { code: string; message: string };

export function hasSqlState(err: unknown): err is CodedError {
  return (
    typeof err === 'object' &&
    err !== null &&
    isSqlState((err as { code?: unknown }).code) &&
    typeof (err as { message?: unknown }).message === 'string'
  );
}

/** The error fields of a coded error, stringified, severity forced to ERROR. */
export function fieldsOf(err: CodedError): MessageFields {
  const fields: MessageFields = { severity: 'ERROR', code: err.code, message: err.message };
  for (const k of FIELD_NAMES) {
    if (k === 'code' || k === 'severity') continue;
    const v: unknown = err[k];
    if (v !== undefined && v !== null) fields[k] = String(v);
  }
  // The connection survives a handler error, so FATAL/PANIC would make libpq
  // expect a close that never comes: always ERROR.
  return fields;
}

export const canceledFields: MessageFields = {
  severity: 'ERROR',
  code: SqlState.queryCanceled,
  message: 'canceling statement due to user request',
};

/** ErrorResponse fields for a failed query. */
export function errorFieldsFor(err: unknown, signal: AbortSignal, logger: Logger): MessageFields {
  if (hasSqlState(err)) return fieldsOf(err);
  // A handler that bails out on abort with a plain AbortError: report it the
  // way PostgreSQL reports a cancel.
  if (signal.aborted) return canceledFields;
  logger.error({ err }, 'wire handler failed');
  return { severity: 'ERROR', code: SqlState.internalError, message: 'internal error' };
}
