/**
 * The SQL API request decoder's fuzz properties (parseRequest in
 * src/server/sql-api-requests.ts), run in a worker thread by
 * fuzz-requests.test.ts.
 *
 * Every text either decodes to a valid request — one that decodes again to
 * itself (as JSON) — or raises a PgbgError with a SQLSTATE (08P01 malformed, 0A000 not
 * JSON); nothing else is thrown, and no input adds anything to the prototypes
 * of plain objects and arrays.
 */
import { parentPort, workerData } from 'node:worker_threads';
import fc from 'fast-check';
import { PgbgError } from '../../src/protocol/errors.js';
import { parseRequest, Request } from '../../src/server/sql-api-requests.js';
import { describeInput, Tally, type WorkerMessage } from './support.js';

export interface RequestsFuzzData {
  seed: number;
  runs: { json: number; shaped: number; text: number };
}

const data = workerData as RequestsFuzzData;
const post = (m: WorkerMessage) => parentPort!.postMessage(m);
const REFUSALS = new Set(['08P01', '0A000']);

const prototypes = [Object.prototype, Array.prototype, Function.prototype, String.prototype];
const pristine = prototypes.map((p) => Reflect.ownKeys(p).length);

function decode(text: string, tally: Tally): void {
  post({ kind: 'input', label: `${tally.name}: ${describeInput(text)}` });
  tally.start();
  let outcome: string;
  try {
    const req = parseRequest(text);
    if (Object.getPrototypeOf(req) !== Object.prototype) throw new Error('not a plain object');
    if (!Request.safeParse(req).success) throw new Error('not a valid request');
    // As JSON text, which has no -0: a pid of -0 is 0.
    const again = JSON.stringify(parseRequest(JSON.stringify(req)));
    if (again !== JSON.stringify(req)) throw new Error(`decodes again to ${describeInput(again)}`);
    outcome = 'accepted';
  } catch (err) {
    if (!(err instanceof PgbgError) || !REFUSALS.has(err.code) || err.message === '' || (err.detail !== undefined && typeof err.detail !== 'string')) {
      throw new Error(`parseRequest(${describeInput(text)}) threw ${err instanceof Error ? `${err.name} ${(err as { code?: string }).code ?? ''}: ${err.message}` : String(err)}`, { cause: err });
    }
    outcome = `refused ${err.code}`;
  }
  prototypes.forEach((p, i) => {
    if (Reflect.ownKeys(p).length !== pristine[i]) throw new Error(`${describeInput(text)} added ${String(Reflect.ownKeys(p).at(-1))} to a prototype`);
  });
  if (({} as Record<string, unknown>).polluted !== undefined) throw new Error(`${describeInput(text)} polluted Object.prototype`);
  tally.add(outcome, Buffer.byteLength(text));
}

// ------------------------------------------------------------ request-shaped JSON, with odd parts

const OPS = [
  'hello', 'launch', 'submit', 'run', 'run_query', 'result', 'detach', 'wait', 'progress', 'notices', 'info', 'outcome',
  'progress_info', 'describe_result', 'wait_timeout', 'wait_for', 'cancel', 'wait_any', 'drain', 'detach_all', 'cancel_all',
  'purge', 'record_timeout', 'cancel_by_label', 'list', 'stats',
];
const KEYS = [
  'op', 'sql', 'pid', 'cookie', 'api', 'nonce', 'backend_pid', 'queue_size', 'label', 'settings', 'statement_timeout_ms',
  'timeout_ms', 'col_def', 'grace_ms', 'cooperative', 'handles', 'pattern', 'as_json', 'max_workers', 'default_queue_size',
  'worker_timeout_ms', '__proto__', 'constructor', 'prototype', 'toString', 'polluted',
];
const PROTO_NAMES = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf'];

const int = fc.integer({ min: -1, max: 1 << 22 }).map(String);
const str = fc.string({ unit: 'binary', maxLength: 40 }).map((s) => JSON.stringify(s));
const bool = fc.boolean().map(String);
/** JSON text of a value that is valid for the field, mostly. */
const goodValue: Record<string, fc.Arbitrary<string>> = {
  sql: str, label: str, pattern: str, col_def: fc.oneof(str, fc.constant('null')),
  pid: int, backend_pid: int, queue_size: int, statement_timeout_ms: int, timeout_ms: int, grace_ms: int,
  max_workers: int, default_queue_size: int, worker_timeout_ms: int,
  cooperative: bool, as_json: bool,
  cookie: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((n) => JSON.stringify(String(n))),
  api: fc.constantFrom('"1.8"', '"2.0"', '"3.0"'),
  nonce: fc.stringMatching(/^[0-9a-f]{32}$/).map((s) => JSON.stringify(s)),
  settings: fc.dictionary(fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom(...PROTO_NAMES)), fc.string({ maxLength: 10 })).map((d) => JSON.stringify(d)),
  handles: fc.array(fc.record({ pid: fc.integer(), cookie: fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }).map(String) }), { maxLength: 5 }).map((a) => JSON.stringify(a)),
};
/** The fields each op needs. */
const REQUIRED: Record<string, string[]> = {
  hello: ['nonce', 'backend_pid'], launch: ['sql'], submit: ['sql'], run: ['sql'], run_query: ['sql'],
  wait_timeout: ['pid', 'timeout_ms'], wait_any: ['handles'], drain: ['handles'], cancel_by_label: ['pattern'],
  ...Object.fromEntries(['result', 'detach', 'wait', 'progress', 'notices', 'info', 'outcome', 'progress_info', 'describe_result', 'wait_for', 'cancel'].map((op) => [op, ['pid']])),
};

/** JSON text of values no field expects. */
const oddValue: fc.Arbitrary<string> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  // Numbers past what a double or a safe integer holds, and their edges.
  fc.constantFrom('1e400', '-1e400', '1e-400', '-0', '0.5', '9007199254740993', '18446744073709551616', '-9223372036854775809', '123456789012345678901234567890', '1E308', '2147483648'),
  // Deep nesting, as text (no stack needed to build it).
  fc.tuple(fc.integer({ min: 1, max: 20_000 }), fc.constantFrom('[', '{"a":')).map(([d, open]) => `${open.repeat(d)}1${(open === '[' ? ']' : '}').repeat(d)}`),
  // Long strings (up to 1 MB), with escapes that JSON.parse turns into NUL and lone surrogates.
  fc.tuple(fc.constantFrom(1, 1000, 100_000, 1_000_000), fc.constantFrom('x', '\\u0000', '\\ud800', '\\udc00x', 'é', '\\"')).map(([n, s]) => `"${s.repeat(Math.ceil(n / s.length))}"`),
  fc.constantFrom(...PROTO_NAMES).map((s) => JSON.stringify(s)),
  fc.constantFrom('{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"polluted":1}}}', '{"__proto__":null}', '[{"__proto__":{"polluted":1}}]'),
);

/** A request for an op: its required fields, some others, and some of either with a value no field expects. */
const shaped = fc.record({
  op: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...OPS) }, { weight: 1, arbitrary: fc.constantFrom(...PROTO_NAMES, '', 'LAUNCH', 'launch ') }),
  extra: fc.array(fc.constantFrom(...KEYS), { maxLength: 5 }),
  odd: fc.array(fc.nat(), { maxLength: 2 }),
}).chain(({ op, extra, odd }) => {
  const keys = [...(Object.hasOwn(REQUIRED, op) ? REQUIRED[op]! : []), ...extra];
  const oddAt = new Set(odd.map((n) => n % (keys.length + 1)));
  const value = (key: string, i: number) => (!oddAt.has(i + 1) && Object.hasOwn(goodValue, key) ? goodValue[key]! : oddValue);
  const opText = oddAt.has(0) ? oddValue : fc.constant(JSON.stringify(op));
  return fc.tuple(opText, ...keys.map((key, i) => value(key, i).map((v) => `${JSON.stringify(key)}:${v}`)))
    .map(([o, ...rest]) => `{${[`"op":${o}`, ...rest].join(',')}}`);
});

// ------------------------------------------------------------ any text

const anyText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 100 }),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('utf8')),
  // A valid request cut short, or with a byte changed.
  fc.tuple(fc.constantFrom('{"op":"launch","sql":"SELECT 1","settings":{"a":"b"}}', '{"op":"wait_any","handles":[{"pid":1,"cookie":"2"}]}'), fc.nat(), fc.integer({ min: 0, max: 255 }))
    .map(([t, at, byte]) => (at % 2 === 0 ? t.slice(0, at % t.length) : t.slice(0, at % t.length) + String.fromCharCode(byte) + t.slice((at % t.length) + 1))),
);

// ------------------------------------------------------------ the properties

const tallies: Record<string, Tally> = {
  json: new Tally('request decoder, any JSON value'),
  shaped: new Tally('request decoder, request-shaped JSON with odd values'),
  text: new Tally('request decoder, any text'),
};
const params = (numRuns: number) => ({ seed: data.seed, numRuns, includeErrorInReport: true });

fc.assert(fc.property(fc.jsonValue(), (v) => decode(JSON.stringify(v) ?? 'null', tallies.json!)), params(data.runs.json));
fc.assert(fc.property(shaped, (text) => decode(text, tallies.shaped!)), params(data.runs.shaped));
fc.assert(fc.property(anyText, (text) => decode(text, tallies.text!)), params(data.runs.text));

post({ kind: 'done', tallies: Object.fromEntries(Object.entries(tallies).map(([k, t]) => [k, t.toJSON()])) });
