/**
 * Static checks on the SQL a caller submits, made with PostgreSQL's own parser
 * (libpg-query, WASM) so that keywords inside string literals, comments, dollar
 * quotes and DO bodies are never mistaken for statements.
 */
import type { DefElem, Node } from 'libpg-query';
import { errors, PgbgError } from '../protocol/errors.js';
import { loadParser, parse, ParserFailure, ParserRefusal } from './pg-parser.js';

export interface StatementPlan {
  /** Number of top-level statements the server will run (0 for an empty/comment-only string). */
  statementCount: number;
  /**
   * True when the string is exactly one statement that PostgreSQL refuses to run
   * inside a transaction block (VACUUM but not plain ANALYZE, CREATE/DROP DATABASE,
   * ALTER DATABASE ... SET TABLESPACE, CREATE/DROP TABLESPACE, ALTER SYSTEM,
   * CREATE/DROP INDEX CONCURRENTLY, REINDEX ... CONCURRENTLY, REINDEX
   * SCHEMA/DATABASE/SYSTEM, CLUSTER without a table, CREATE/ALTER/DROP
   * SUBSCRIPTION, ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY, DISCARD ALL).
   * ALTER TYPE ... ADD VALUE is allowed in a block since PG12, so it is false.
   */
  mustRunAlone: boolean;
  /** False when the parser could not parse the string (e.g. a syntax error); the server will then report the error itself. */
  parsed: boolean;
}

/** Loads the parser's WASM module once; idempotent; safe to call concurrently. */
export function loadClassifier(): Promise<void> {
  return loadParser();
}

/**
 * Throws PgbgError (0A000) for transaction control and COPY anywhere among the
 * top-level statements; otherwise returns the plan. Synchronous once
 * `loadClassifier()` has resolved.
 */
export function classifyStatements(sql: string): StatementPlan {
  const cached = recentPlans.get(sql);
  if (cached) {
    // Re-inserting keeps the map in least-recently-used order.
    recentPlans.delete(sql);
    recentPlans.set(sql, cached);
    return cached;
  }
  // Refused texts throw here and are not kept: each refusal gets its own error object.
  const plan = Object.freeze(classifyUncached(sql));
  if (sql.length <= MAX_CACHED_SQL_LENGTH) {
    recentPlans.set(sql, plan);
    if (recentPlans.size > MAX_CACHED_PLANS) recentPlans.delete(recentPlans.keys().next().value!);
  }
  return plan;
}

/*
 * Parsing costs ~0.1 ms of the server's CPU per launch, and applications
 * launch the same texts again and again (audit inserts, maintenance calls):
 * the plans of recent texts are kept, as PostgreSQL keeps plans of prepared
 * statements. The plan depends on the text alone, so a hit is always exact.
 */
const MAX_CACHED_PLANS = 512;
const MAX_CACHED_SQL_LENGTH = 4096;
const recentPlans = new Map<string, StatementPlan>();

function classifyUncached(sql: string): StatementPlan {
  // libpg-query rejects '' outright, whereas the server answers it with EmptyQueryResponse.
  if (sql === '') return { statementCount: 0, mustRunAlone: false, parsed: true };
  // The parser stops reading at a NUL: what it checked would not be the whole text. PostgreSQL's
  // text cannot hold one either (the server refuses such a Query message).
  if (sql.includes('\0')) throw nulInText();

  let stmts: Node[];
  try {
    stmts = (parse(asSent(sql)).stmts ?? []).flatMap((raw) => (raw.stmt ? [raw.stmt] : []));
  } catch (err) {
    // The parser refused the text (a syntax error, or its stack of 10,000 tokens ran out):
    // PostgreSQL's parser refuses the whole string alike before running any of it, and the
    // server reports the error with its own position and SQLSTATE. Not so for stack depth,
    // whose limit differs there.
    if (err instanceof ParserRefusal && !/stack depth/i.test(err.message)) return { statementCount: 1, mustRunAlone: false, parsed: false };
    // Too deeply nested to check (the stack under the parser's WASM code ran out): the server
    // may well run it — statements before the deep one included, COMMIT among them — so what
    // cannot be checked is not run.
    if (err instanceof ParserRefusal || err instanceof ParserFailure) throw tooComplex();
    throw err;
  }

  for (const stmt of stmts) {
    // A worker runs the whole string as one unit whose outcome the launcher
    // reports; letting it commit, roll back or prepare part way would break that.
    if ('TransactionStmt' in stmt) throw errors.transactionControl();
    // COPY FROM STDIN / TO STDOUT need the copy sub-protocol, which the result
    // queue cannot carry; file/program COPY is refused too, as pg_background does.
    if ('CopyStmt' in stmt) throw errors.copy();
  }

  const only = stmts.length === 1 ? stmts[0] : undefined;
  // In a multi-statement string these statements fail anyway (the server wraps
  // the string in an implicit transaction block), so only a lone one can run alone.
  return { statementCount: stmts.length, mustRunAlone: only !== undefined && refusesTransactionBlock(only), parsed: true };
}

/**
 * The text as the server receives it: node-postgres encodes a lone surrogate
 * as U+FFFD, whereas libpg-query's encoder counts one as four bytes and writes
 * three (a surrogate followed by a 3-byte character cut the end of the text
 * off: a COMMIT there went unseen).
 */
function asSent(sql: string): string {
  // String.prototype.isWellFormed/toWellFormed (Node 20; TypeScript has them from its ES2024 lib on).
  const s = sql as unknown as { isWellFormed(): boolean; toWellFormed(): string };
  return s.isWellFormed() ? sql : s.toWellFormed();
}

function nulInText(): PgbgError {
  return new PgbgError('22021', 'invalid byte sequence for encoding "UTF8": 0x00', {
    detail: 'The SQL text contains a NUL character, which PostgreSQL text cannot hold.',
  });
}

function tooComplex(): PgbgError {
  return new PgbgError('54001', 'statement is too complex to check', {
    detail: 'pgbg checks the SQL text with PostgreSQL\'s parser before a worker runs it; this text\'s parse tree is nested too deeply to check.',
    hint: 'Simplify the statement: fewer nested expressions, subqueries or set operations.',
  });
}

/**
 * Mirrors the statements whose execution calls PreventInTransactionBlock().
 * Cases decided only at run time (e.g. REINDEX of a partitioned table) are not
 * visible here; where syntax alone is ambiguous (subscriptions) this errs towards
 * true, since a lone statement may always run outside a transaction block.
 */
function refusesTransactionBlock(stmt: Node): boolean {
  if ('VacuumStmt' in stmt) return stmt.VacuumStmt.is_vacuumcmd === true; // ANALYZE shares the node
  if ('IndexStmt' in stmt) return stmt.IndexStmt.concurrent === true;
  if ('DropStmt' in stmt) return stmt.DropStmt.concurrent === true;
  if ('ReindexStmt' in stmt) {
    const { kind, params = [] } = stmt.ReindexStmt;
    return kind === 'REINDEX_OBJECT_SCHEMA' || kind === 'REINDEX_OBJECT_DATABASE' || kind === 'REINDEX_OBJECT_SYSTEM'
      || params.some((p) => 'DefElem' in p && p.DefElem.defname === 'concurrently' && defIsTrue(p.DefElem));
  }
  if ('ClusterStmt' in stmt) return stmt.ClusterStmt.relation === undefined; // CLUSTER of every table
  if ('AlterTableStmt' in stmt) {
    return (stmt.AlterTableStmt.cmds ?? []).some((c) => 'AlterTableCmd' in c
      && c.AlterTableCmd.subtype === 'AT_DetachPartition'
      && c.AlterTableCmd.def !== undefined && 'PartitionCmd' in c.AlterTableCmd.def
      && c.AlterTableCmd.def.PartitionCmd.concurrent === true);
  }
  if ('AlterDatabaseStmt' in stmt) {
    return (stmt.AlterDatabaseStmt.options ?? []).some((o) => 'DefElem' in o && o.DefElem.defname === 'tablespace');
  }
  if ('DiscardStmt' in stmt) return stmt.DiscardStmt.target === 'DISCARD_ALL';
  return 'CreatedbStmt' in stmt || 'DropdbStmt' in stmt
    || 'CreateTableSpaceStmt' in stmt || 'DropTableSpaceStmt' in stmt
    || 'AlterSystemStmt' in stmt
    || 'CreateSubscriptionStmt' in stmt || 'AlterSubscriptionStmt' in stmt || 'DropSubscriptionStmt' in stmt;
}

/**
 * defGetBoolean() for an option like `(CONCURRENTLY false)`. The parse tree omits
 * zero/false values, so `{ Integer: {} }` is 0 and `{ Boolean: {} }` is false.
 */
function defIsTrue(def: DefElem): boolean {
  const arg = def.arg;
  if (arg === undefined) return true; // bare option name
  if ('Integer' in arg) return (arg.Integer.ival ?? 0) !== 0;
  if ('Boolean' in arg) return arg.Boolean.boolval === true;
  // defGetBoolean() accepts only true/false/on/off as words; anything else errors there.
  if ('String' in arg) return !['false', 'off'].includes((arg.String.sval ?? '').toLowerCase());
  return true;
}

/** First `max` characters (code points) of `sql`, never cutting a UTF-8 multi-byte sequence or surrogate pair. Default max = 120. */
export function sqlPreview(sql: string, max = 120): string {
  // Iterating a string yields whole code points, so a surrogate pair is never
  // split, and a string of whole code points always encodes to valid UTF-8.
  let end = 0;
  let count = 0;
  for (const ch of sql) {
    if (count >= max) break;
    end += ch.length;
    count++;
  }
  return sql.slice(0, end);
}

/**
 * True when `text` is a column definition list and nothing else, as in
 * `… AS r(<text>)`: pg_background 2.0's run_query splices its col_def there, and
 * pgbg takes only what that place means. Parsed, not pattern-matched: the
 * statement around it must be exactly `SELECT * FROM f() AS r(…)`.
 */
export function isColumnDefinitionList(text: string): boolean {
  if (text.includes('\0')) return false;
  let stmts;
  try {
    stmts = parse(`SELECT * FROM f() AS r(${asSent(text)})`).stmts ?? [];
  } catch (err) {
    if (err instanceof ParserRefusal || err instanceof ParserFailure) return false;
    throw err;
  }
  const from = (stmts[0]?.stmt as { SelectStmt?: { fromClause?: { RangeFunction?: { coldeflist?: unknown[] } }[] } } | undefined)?.SelectStmt?.fromClause;
  const columns = from?.[0]?.RangeFunction?.coldeflist;
  if (stmts.length !== 1 || !columns || columns.length === 0) return false;
  if (!columns.every((c) => Object.keys((c as { ColumnDef?: object }).ColumnDef ?? { x: 0 }).every((k) => COLUMN_DEF_KEYS.has(k)))) return false;
  const shape = (s: unknown) => JSON.stringify(s, (k, v: unknown) => (k === 'location' || k === 'coldeflist' ? undefined : v));
  return shape(stmts[0]!.stmt) === shape(parse('SELECT * FROM f() AS r(x int)').stmts![0]!.stmt);
}

/** What a column definition may say: a name, a type, a collation (no defaults, constraints, storage). */
const COLUMN_DEF_KEYS = new Set(['colname', 'typeName', 'is_local', 'collClause', 'location']);
