/**
 * One simple-protocol Query message, start to ReadyForQuery.
 *
 * The handler gets the whole query string once (it may hold several
 * statements; splitting SQL is its business) and answers with one result per
 * statement. Rows are pulled one at a time and the next row is only pulled once
 * the socket accepted the previous one, so a slow client throttles the producer
 * instead of filling our memory.
 */
import type { Logger } from 'pino';
import { PgbgError, SqlState } from '../protocol/errors.js';
import type { WireConnection, WireHandler, WireResult } from './wire-types.js';
import { errorFieldsFor } from './wire-errors.js';
import { commandComplete, dataRow, emptyQueryResponse, errorResponse, readyForQuery, rowDescription } from './wire-messages.js';
import { BATCH_BYTES, type WireOutput } from './wire-socket.js';

export interface QueryContext {
  out: WireOutput;
  handler: WireHandler;
  conn: WireConnection;
  logger: Logger;
  /** Answer lone `SET name TO value` statements ourselves (see WireServerOptions.answerSet). */
  answerSet: boolean;
}

/** Nothing but whitespace and semicolons: PostgreSQL answers EmptyQueryResponse. */
const EMPTY = /^[\s;]*$/;

const VALUE = String.raw`(?:'(?:[^']|'')*'|[^\s;',]+)`;
/** A single `SET [SESSION|LOCAL] name {TO|=} value[, value...]` with an optional trailing ';'. */
const SET = new RegExp(
  String.raw`^\s*SET\s+(?:SESSION\s+|LOCAL\s+)?([A-Za-z_][A-Za-z0-9_.$]*)\s*(?:\s+TO\s+|=)\s*(${VALUE}(?:\s*,\s*${VALUE})*)\s*;?\s*$`,
  'is',
);

export interface SetStatement {
  name: string;
  value: string;
}

/** Recognises one plain SET statement (libpq/dblink send `set client_encoding to 'UTF8'`). */
export function parseSet(sql: string): SetStatement | undefined {
  const m = SET.exec(sql);
  if (!m) return undefined;
  return { name: m[1]!.toLowerCase(), value: m[2]!.trim() };
}

function unquote(v: string): string {
  return v.startsWith("'") ? v.slice(1, -1).replaceAll("''", "'") : v;
}

/**
 * We only ever produce UTF-8 and do no conversion, so agreeing to another
 * client_encoding would silently hand the client mis-encoded text. dblink sets
 * the local database's encoding, so a non-UTF8 database fails loudly here.
 */
function checkSet(set: SetStatement): void {
  if (set.name !== 'client_encoding') return;
  const enc = unquote(set.value).toLowerCase().replace(/[-_]/g, '');
  if (enc === 'utf8' || enc === 'unicode' || enc === 'default') return;
  throw new PgbgError(SqlState.featureNotSupported, `client_encoding "${unquote(set.value)}" is not supported`, {
    detail: 'This endpoint only speaks UTF8.',
  });
}

async function sendResult(out: WireOutput, result: WireResult, signal: AbortSignal): Promise<void> {
  const fields = result.fields;
  if (fields) out.write(rowDescription(fields));
  if ((result.rows || result.dataRows) && !fields) {
    // DataRow without a RowDescription, or with another column count, makes libpq drop the connection.
    throw new Error('wire handler returned rows without fields');
  }
  if (result.dataRows) {
    let sent = 0;
    try {
      for await (const batch of result.dataRows) {
        if (out.closed) break;
        // Canceled mid-stream: stop here (ErrorResponse after the rows sent so far, as PostgreSQL does).
        if (signal.aborted) throw signal.reason as Error;
        let writable = true;
        for (const row of batch) {
          if (!out.write(row)) writable = false;
          sent += row.byteLength;
        }
        // Past one batch the result is large: its rows may wait a moment to leave in fuller writes.
        // A small result never waits.
        if (sent >= BATCH_BYTES) out.streaming = true;
        if (!writable) await out.drain();
      }
    } finally {
      out.streaming = false;
    }
  } else if (result.rows) {
    for await (const row of result.rows) {
      if (out.closed) break;
      if (!Array.isArray(row) || row.length !== fields!.length || row.some((v) => v !== null && typeof v !== 'string')) {
        throw new Error(`wire handler returned a row that does not match its ${fields!.length} text fields`);
      }
      if (!out.write(dataRow(row))) await out.drain();
    }
  }
  out.write(commandComplete(result.commandTag));
  if (!signal.aborted && !out.closed) result.onSent?.();
}

export async function runSimpleQuery(ctx: QueryContext, sql: string, signal: AbortSignal): Promise<void> {
  const { out } = ctx;
  try {
    if (EMPTY.test(sql)) {
      out.write(emptyQueryResponse());
      return;
    }
    const set = ctx.answerSet ? parseSet(sql) : undefined;
    if (set) {
      checkSet(set);
      out.write(commandComplete('SET'));
      return;
    }
    const answer = await ctx.handler.query(sql, ctx.conn, signal);
    for (const result of Array.isArray(answer) ? answer : [answer]) {
      if (out.closed) return;
      await sendResult(out, result, signal);
    }
  } catch (err) {
    out.write(errorResponse(errorFieldsFor(err, signal, ctx.logger)));
  } finally {
    // Simple protocol has no transactions of ours to report: always idle.
    out.write(readyForQuery('I'));
  }
}
