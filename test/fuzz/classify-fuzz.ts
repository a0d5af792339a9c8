/**
 * The SQL classifier's fuzz properties, run in a worker thread by
 * fuzz-classify.test.ts (which bounds each input with a timer).
 *
 * Every input either classifies — a plan of the right shape — or raises a
 * PgbgError with one of the SQLSTATEs the classifier uses (0A000 transaction
 * control or COPY, 22021 NUL, 54001 too deeply nested to check); the
 * classifier judges the text the server will receive (lone surrogates as
 * U+FFFD), and a text holding COMMIT is never let through as parsed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import fc from 'fast-check';
import { PgbgError } from '../../src/protocol/errors.js';
import { classifyStatements, isColumnDefinitionList, loadClassifier, type StatementPlan } from '../../src/sql/classify.js';
import { describeInput, Tally, type WorkerMessage } from './support.js';

export interface ClassifyFuzzData {
  seed: number;
  runs: { soup: number; text: number; deep: number };
  /** Size of the one huge input, in characters. */
  hugeChars: number;
}

const data = workerData as ClassifyFuzzData;
const post = (m: WorkerMessage) => parentPort!.postMessage(m);
const REFUSALS = new Set(['0A000', '22021', '54001']);

type Outcome = { plan: StatementPlan } | { code: string };

/** Classifies, checking the contract; returns what happened. */
function classify(sql: string, tally: Tally | undefined): Outcome {
  post({ kind: 'input', label: `${tally?.name ?? 'again, as sent'}: ${describeInput(sql)}` });
  let outcome: Outcome;
  tally?.start();
  try {
    const plan = classifyStatements(sql);
    if (!Number.isInteger(plan.statementCount) || plan.statementCount < 0 || typeof plan.mustRunAlone !== 'boolean' || typeof plan.parsed !== 'boolean') {
      throw new Error(`malformed plan ${JSON.stringify(plan)}`);
    }
    if (!plan.parsed && plan.mustRunAlone) throw new Error('an unparsed text cannot be known to need running alone');
    outcome = { plan };
  } catch (err) {
    if (!(err instanceof PgbgError) || !REFUSALS.has(err.code)) {
      throw new Error(`classifyStatements(${describeInput(sql)}) threw ${err instanceof Error ? `${err.name} ${(err as { code?: string }).code ?? ''}: ${err.message}` : String(err)}`, { cause: err });
    }
    outcome = { code: err.code };
  }
  tally?.add('plan' in outcome ? (outcome.plan.parsed ? 'classified' : 'left to the server (syntax error)') : `refused ${outcome.code}`, sql.length);
  return outcome;
}

function columnDefinitions(text: string): void {
  const answer: unknown = isColumnDefinitionList(text);
  if (typeof answer !== 'boolean') throw new Error(`isColumnDefinitionList(${describeInput(text)}) answered ${String(answer)}`);
}

// ------------------------------------------------------------ token soup

const TOKENS = [
  'SELECT', 'FROM', 'WHERE', 'INSERT', 'INTO', 'VALUES', 'UPDATE', 'SET', 'DELETE', 'WITH', 'AS', 'UNION', 'ALL',
  'BEGIN', 'COMMIT', 'ROLLBACK', 'SAVEPOINT', 'RELEASE', 'END', 'ABORT', 'START', 'TRANSACTION', 'PREPARE', 'PREPARED',
  'COPY', 'TO', 'STDOUT', 'STDIN', 'VACUUM', 'ANALYZE', 'CREATE', 'DROP', 'INDEX', 'CONCURRENTLY', 'DATABASE', 'REINDEX',
  'DO', 'LANGUAGE', 'plpgsql', 'FUNCTION', 'RETURNS', 'int', 'text', 'CASE', 'WHEN', 'THEN', 'ELSE', 'NOT', 'NULL',
  'DISCARD', 'CLUSTER', 'ALTER', 'SYSTEM', 'TABLE', 't', 'x', '"x y"', '""', 'U&"\\0041"',
  '1', '0x1F', '1e400', '1_000', '$1', '$$', '$a$', "'", "''", "'a'", "E'\\''", "E'\\\\'", "U&'\\0041'", "B'101'",
  '(', ')', '[', ']', ',', ';', ';;', '.', '::', '+', '-', '*', '/', '=', '<>', '||', '->>', '@>',
  '--', '\n', '/*', '*/', '/* /* */', '\\', '\t', '\r\n', '\u00a0', '\u2028', '\ufeff', '😀', 'é', '\uD800', '\uDC00', '\0',
];
const soup = fc.array(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...TOKENS) }, { weight: 1, arbitrary: fc.string({ maxLength: 8 }) }), { maxLength: 40 })
  .chain((tokens) => fc.constantFrom(' ', '', '\n').map((sep) => tokens.join(sep)));

// ------------------------------------------------------------ arbitrary text

const anyCodeUnit = fc.integer({ min: 0, max: 0xffff }).map((u) => String.fromCharCode(u));
const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: anyCodeUnit, maxLength: 80 }),
  // Bytes as the wire endpoint decodes them (invalid UTF-8 becomes U+FFFD).
  fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b).toString('utf8')),
  // Some SQL around a string literal holding anything, then a statement the classifier must see.
  fc.tuple(fc.string({ unit: anyCodeUnit, maxLength: 30 }), fc.constantFrom('; COMMIT', '; SELECT 1', '; COPY t TO STDOUT', '')).map(([s, tail]) => `SELECT '${s.replaceAll("'", "''")}'${tail}`),
  // A lone surrogate, then 3-byte characters: libpg-query's encoder once cut the text's end off.
  fc.tuple(fc.integer({ min: 1, max: 30 }), fc.constantFrom('\uD800', '\uDBFF', '\uDC00'), fc.constantFrom('\u4e00', 'é', 'x', '😀')).map(([n, s, c]) => `SELECT '${(s + c).repeat(n)}'; COMMIT`),
);

// ------------------------------------------------------------ deep nesting

const NESTINGS: Record<string, (d: number) => string> = {
  parens: (d) => `SELECT ${'('.repeat(d)}1${')'.repeat(d)}`,
  subqueries: (d) => `SELECT ${'(SELECT '.repeat(d)}1${')'.repeat(d)}`,
  arrays: (d) => `SELECT ${'ARRAY['.repeat(d)}1${']'.repeat(d)}`,
  calls: (d) => `SELECT ${'abs('.repeat(d)}1${')'.repeat(d)}`,
  not: (d) => `SELECT ${'NOT '.repeat(d)}true`,
  minus: (d) => `SELECT ${'- '.repeat(d)}1`,
  sum: (d) => `SELECT 1${'+1'.repeat(d)}`,
  casts: (d) => `SELECT 1${'::int'.repeat(d)}`,
  subscripts: (d) => `SELECT a${'[1]'.repeat(d)} FROM t`,
  cases: (d) => `SELECT ${'CASE WHEN true THEN '.repeat(d)}1${' END'.repeat(d)}`,
  unions: (d) => `SELECT 1${' UNION SELECT 1'.repeat(d)}`,
  ands: (d) => `SELECT true${' AND true'.repeat(d)}`,
  isnull: (d) => `SELECT true${' IS NULL'.repeat(d)}`,
  ctes: (d) => `${Array.from({ length: d }, (_, i) => `${i === 0 ? 'WITH' : ','} c${i} AS (SELECT 1)`).join('')} SELECT 1`,
  dos: (d) => `DO $${'x'.repeat(Math.min(d, 50))}$ BEGIN ${'BEGIN '.repeat(d)}NULL;${' END;'.repeat(d)} END $${'x'.repeat(Math.min(d, 50))}$`,
};
/** Nestings that PostgreSQL's grammar takes at any depth (chains and lists, no bracket nesting): their texts are valid SQL. */
const VALID_AT_ANY_DEPTH = new Set(['sum', 'casts', 'subscripts', 'unions', 'ands', 'isnull', 'ctes']);
// Depths around PostgreSQL's and libpg-query's limits, more often than a uniform draw would give.
const depth = fc.oneof(
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 300 }) },
  { weight: 2, arbitrary: fc.constantFrom(999, 1000, 1001, 2000, 4999, 5000, 7999, 8000, 9999, 10000, 10001) },
  { weight: 2, arbitrary: fc.noBias(fc.integer({ min: 300, max: 20_000 })) },
);
const deep = fc.record({
  kind: fc.constantFrom(...Object.keys(NESTINGS)),
  depth,
  before: fc.constantFrom('', 'COMMIT; ', 'SELECT 1; ', 'INSERT INTO t VALUES (1); COMMIT; '),
  after: fc.constantFrom('', '; COMMIT', '; SELECT 1', '; COPY t TO STDOUT'),
});

// ------------------------------------------------------------ the properties

await loadClassifier();
const tallies: Record<string, Tally> = {
  soup: new Tally('classifier, SQL token soup'),
  text: new Tally('classifier, any text'),
  deep: new Tally('classifier, deep nesting'),
  huge: new Tally('classifier, huge texts'),
};

// Each input after `await loadClassifier()`, as a launch classifies after `await engine.ready()`:
// a text that made the parser fail gets a fresh instance, which that await waits for.
await fc.assert(
  fc.asyncProperty(soup, async (sql) => {
    await loadClassifier();
    const outcome = classify(sql, tallies.soup!);
    await loadClassifier();
    columnDefinitions(sql);
    // What is judged is what the server gets: the same text as node-postgres encodes it.
    if (!sql.includes('\0')) {
      const sent = Buffer.from(sql, 'utf8').toString('utf8');
      await loadClassifier();
      if (sent !== sql) assertSame(outcome, classify(sent, undefined), sql);
    }
  }),
  { seed: data.seed, numRuns: data.runs.soup, includeErrorInReport: true },
);

await fc.assert(
  fc.asyncProperty(text, async (sql) => {
    await loadClassifier();
    const outcome = classify(sql, tallies.text!);
    await loadClassifier();
    columnDefinitions(sql);
    await loadClassifier();
    if (!sql.includes('\0')) assertSame(outcome, classify(Buffer.from(sql, 'utf8').toString('utf8'), undefined), sql);
    if (sql.includes('\0') && !('code' in outcome && outcome.code === '22021')) throw new Error(`a text with NUL was classified: ${describeInput(sql)}`);
  }),
  { seed: data.seed, numRuns: data.runs.text, includeErrorInReport: true },
);

await fc.assert(
  fc.asyncProperty(deep, async ({ kind, depth: d, before, after }) => {
    const sql = before + NESTINGS[kind]!(d) + after;
    await loadClassifier();
    const outcome = classify(sql, tallies.deep!);
    await loadClassifier();
    columnDefinitions(`x int DEFAULT ${NESTINGS[kind]!(d).slice('SELECT '.length)}`);
    if (/COMMIT/.test(before + after) && 'plan' in outcome && outcome.plan.parsed) {
      throw new Error(`COMMIT let through in ${kind} × ${d}`);
    }
    // Left to the server as a syntax error, it would run, and its COMMIT (if any) with it.
    if (VALID_AT_ANY_DEPTH.has(kind) && 'plan' in outcome && !outcome.plan.parsed) {
      throw new Error(`valid SQL (${kind} × ${d}, ${JSON.stringify(before)} … ${JSON.stringify(after)}) left to the server unchecked`);
    }
    if ('plan' in outcome && outcome.plan.parsed) {
      const expected = 1 + (before ? before.split(';').length - 1 : 0) + (after ? 1 : 0);
      if (outcome.plan.statementCount !== expected) throw new Error(`${kind} × ${d}: ${outcome.plan.statementCount} statements, expected ${expected}`);
    }
  }),
  { seed: data.seed, numRuns: data.runs.deep, includeErrorInReport: true },
);

// One huge text: a literal of hugeChars characters, then a COMMIT that must still be seen.
if (data.hugeChars > 0) {
  await loadClassifier();
  const literal = classify(`SELECT '${'x'.repeat(data.hugeChars)}'; COMMIT`, tallies.huge!);
  if (!('code' in literal) || literal.code !== '0A000') throw new Error(`a COMMIT after a huge literal: ${JSON.stringify(literal)}`);
}

post({ kind: 'done', tallies: Object.fromEntries(Object.entries(tallies).map(([k, t]) => [k, t.toJSON()])) });

function assertSame(a: Outcome, b: Outcome, sql: string): void {
  if (JSON.stringify(a) !== JSON.stringify(b)) {
    throw new Error(`${describeInput(sql)} is judged ${JSON.stringify(a)}, but as the server receives it ${JSON.stringify(b)}`);
  }
}
