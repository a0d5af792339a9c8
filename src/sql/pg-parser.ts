/**
 * PostgreSQL's raw parser (libpg-query's WASM build), in instances of our own.
 *
 * libpg-query's API keeps one instance of its WASM module for the process.
 * When a parse fails other than by PostgreSQL's parser refusing the text — a
 * parse tree nested deeply enough to exhaust the stack under the WASM code (a
 * RangeError), or its memory running out — the C code is cut off midway: its
 * memory leaks (MBs each time) and after a few dozen such texts the instance
 * was corrupted for good (every later parse: "memory access out of bounds").
 * So instances are made here, with libpg-query's Emscripten factory, and one
 * that failed that way is dropped and replaced by a fresh one.
 */
import { createRequire } from 'node:module';
import type { ParseResult } from 'libpg-query';
import { PgbgError, SqlState } from '../protocol/errors.js';

/** The part of an instance of libpg-query's WASM module that parsing uses. */
interface PgQueryModule {
  _malloc(size: number): number;
  _free(ptr: number): void;
  _wasm_parse_query_raw(query: number): number;
  _wasm_free_parse_result(result: number): void;
  lengthBytesUTF8(text: string): number;
  stringToUTF8(text: string, ptr: number, maxBytes: number): void;
  UTF8ToString(ptr: number): string;
  getValue(ptr: number, type: 'i32'): number;
}

/** PostgreSQL's parser refused the text: a syntax error, or its stack of 10,000 tokens ran out. */
export class ParserRefusal extends Error {
  override name = 'ParserRefusal';
}

/** The parse failed otherwise (see above): that instance was dropped and a fresh one is loading. */
export class ParserFailure extends Error {
  override name = 'ParserFailure';
}

let instance: PgQueryModule | undefined;
let loading: Promise<void> | undefined;

/** Loads an instance, once; idempotent; safe to call concurrently. After a failure, the fresh instance's load. */
export function loadParser(): Promise<void> {
  loading ??= (async () => {
    // Loaded lazily: the factory compiles the WASM, which code paths that never parse SQL should not pay for.
    const factory = createRequire(import.meta.url)('libpg-query/wasm/libpg-query.js') as () => Promise<PgQueryModule>;
    instance = await factory();
  })().catch((err: unknown) => {
    loading = undefined; // let a later call retry
    throw err;
  });
  return loading;
}

/**
 * The parse tree of `sql`, which must be well-formed UTF-16 without NUL (the
 * module's encoder miscounts lone surrogates; C stops at NUL). Synchronous once
 * loadParser() resolved. Throws ParserRefusal, ParserFailure, or — while a
 * fresh instance loads — a PgbgError (53000) to retry on.
 */
export function parse(sql: string): ParseResult {
  const m = instance;
  if (!m) {
    if (loading) throw new PgbgError(SqlState.insufficientResources, 'the SQL parser is restarting', { hint: 'Retry.' });
    throw new Error('parse() called before loadParser() resolved');
  }
  try {
    return parseWith(m, sql);
  } catch (err) {
    if (err instanceof ParserRefusal) throw err;
    if (instance === m) {
      instance = undefined;
      loading = undefined;
      void loadParser().catch(() => undefined); // a later loadParser() tries again
    }
    throw new ParserFailure('libpg-query failed', { cause: err });
  }
}

/** libpg-query's parseSync, on `m` (pg_query.h: PgQueryParseResult is { parse_tree, stderr_buffer, error }, PgQueryError starts with message). */
function parseWith(m: PgQueryModule, sql: string): ParseResult {
  const size = m.lengthBytesUTF8(sql) + 1;
  const text = m._malloc(size);
  if (!text) throw new Error('out of memory');
  let result = 0;
  try {
    m.stringToUTF8(sql, text, size);
    result = m._wasm_parse_query_raw(text);
    if (!result) throw new Error('out of memory');
    const error = m.getValue(result + 8, 'i32');
    if (error) throw new ParserRefusal(m.UTF8ToString(m.getValue(error, 'i32')));
    return JSON.parse(m.UTF8ToString(m.getValue(result, 'i32'))) as ParseResult;
  } finally {
    m._free(text);
    if (result) m._wasm_free_parse_result(result);
  }
}
