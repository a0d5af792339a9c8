/**
 * The requests the SQL API wrappers send to the server through dblink: one JSON
 * object per Query message, after the header that proves its role
 * (request-proof.ts). Who the caller is comes from the connection's login and
 * that proof, never from the body; `hello` binds the connection to the caller's
 * backend once.
 */
import { z } from 'zod';
import { PgbgError, SqlState } from '../protocol/errors.js';

/** Which surface sent the request: 1.8 and 2.0 differ in a few messages and answers. */
const api = { api: z.enum(['1.8', '2.0']).default('1.8') };
const cookie = z.string().regex(/^-?\d{1,19}$/);
const handle = {
  pid: z.number().int(),
  cookie: cookie.optional(),
  ...api,
};
/** Many handles at once (drain, wait_any): bounded like every input. */
const handles = z.array(z.object({ pid: z.number().int(), cookie })).max(100_000);
const timeout = { timeout_ms: z.number().int().default(0) };
const gucs = {
  ...api,
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

const launch = {
  sql: z.string(),
  queue_size: z.number().int().default(0),
  label: z.string().max(1024).optional(),
  settings: stringRecord.default({}),
  statement_timeout_ms: z.number().int().min(0).default(0),
  ...gucs,
};

export const Request = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('hello'),
    /** Chosen by the caller's backend for this connection; every proof on it is bound to it. */
    nonce: z.string().regex(/^[0-9a-f]{32}$/),
    backend_pid: z.number().int(),
  }),
  z.object({ op: z.enum(['launch', 'submit']), ...launch }),
  /** Launch, wait and detach in one request (2.0's run; run_query then reads the rows). */
  z.object({ op: z.literal('run'), ...launch, ...timeout }),
  z.object({ op: z.literal('run_query'), ...launch, ...timeout, col_def: z.string().max(64 * 1024).nullable().default(null) }),
  z.object({ op: z.enum(['result', 'detach', 'wait', 'progress', 'notices', 'info', 'outcome', 'progress_info']), ...handle }),
  /** The columns, and the rows too when they are few (two result sets). */
  z.object({ op: z.literal('describe_result'), ...handle }),
  z.object({ op: z.literal('wait_timeout'), ...handle, timeout_ms: z.number().int() }),
  z.object({ op: z.literal('wait_for'), ...handle, ...timeout }),
  z.object({ op: z.literal('cancel'), ...handle, grace_ms: z.number().int().default(0), cooperative: z.boolean().default(false) }),
  z.object({ op: z.enum(['wait_any', 'drain']), handles, ...timeout, ...api }),
  z.object({ op: z.enum(['detach_all', 'cancel_all', 'purge', 'record_timeout']), ...api }),
  z.object({ op: z.literal('cancel_by_label'), pattern: z.string().max(64 * 1024), grace_ms: z.number().int().default(0), ...api }),
  /** `as_json`: one JSON answer (2.0's wrappers) instead of rows (1.8's). */
  z.object({ op: z.enum(['list', 'stats']), ...gucs, as_json: z.boolean().default(false) }),
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
