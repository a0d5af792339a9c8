/**
 * The requests the SQL API wrappers send to the server through dblink: one JSON
 * object per Query message, after the header that proves its role
 * (request-proof.ts). Who the caller is comes from the connection's login and
 * that proof, never from the body; `hello` binds the connection to the caller's
 * backend once.
 */
import { z } from 'zod';
import { PgbgError, SqlState } from '../protocol/errors.js';

const handle = {
  pid: z.number().int(),
  cookie: z.string().regex(/^-?\d{1,19}$/).optional(),
};
const gucs = {
  max_workers: z.number().int().min(1).max(1000).optional(),
  default_queue_size: z.number().int().optional(),
  worker_timeout_ms: z.number().int().min(0).optional(),
};

/**
 * Settings arrive as ~75 name/value pairs per launch; z.record() validated
 * each key and value as a schema of its own, a tenth of the server's CPU per
 * launch. One loop checks the same thing.
 */
const stringRecord = z.custom<Record<string, string>>(
  (v) => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string'),
  { message: 'settings must be an object of strings' },
);

export const Request = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('hello'),
    /** Chosen by the caller's backend for this connection; every proof on it is bound to it. */
    nonce: z.string().regex(/^[0-9a-f]{32}$/),
    backend_pid: z.number().int(),
  }),
  z.object({
    op: z.enum(['launch', 'submit']),
    sql: z.string(),
    queue_size: z.number().int().default(0),
    settings: stringRecord.default({}),
    statement_timeout_ms: z.number().int().min(0).default(0),
    ...gucs,
  }),
  z.object({ op: z.enum(['result', 'detach', 'wait', 'progress', 'notices']), ...handle }),
  /** The columns, and the rows too when they are few (two result sets). */
  z.object({ op: z.literal('describe_result'), ...handle }),
  z.object({ op: z.literal('wait_timeout'), ...handle, timeout_ms: z.number().int() }),
  z.object({ op: z.literal('cancel'), ...handle, grace_ms: z.number().int().default(0) }),
  z.object({ op: z.enum(['list', 'stats']), ...gucs }),
]);

export type Request = z.infer<typeof Request>;

export function parseRequest(text: string): Request {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw notARequest();
  }
  const parsed = Request.safeParse(json);
  if (!parsed.success) {
    throw new PgbgError('08P01', 'malformed pgbg SQL API request', { detail: parsed.error.issues[0]?.message });
  }
  return parsed.data;
}

export function notARequest(): PgbgError {
  return new PgbgError(SqlState.featureNotSupported, 'this endpoint accepts only pgbg SQL API requests');
}
