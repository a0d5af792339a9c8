/**
 * Large results: N rows of (int, md5 text) read to the end, by each path.
 * "count" variants count on the caller's server (no rows cross to the client);
 * "read" variants stream every row to this process without keeping them.
 */
import pg from 'pg';
import type { BenchContext } from './paths.js';
import { lit, nowMs, resultOfLaunch } from './util.js';

export interface LargeVariant {
  id: string;
  label: string;
  /** Reads the whole result; resolves to the number of rows seen. */
  run(ctx: BenchContext, rows: number): Promise<number>;
}

function bigSql(rows: number): string {
  return `SELECT g, md5(g::text) FROM generate_series(1, ${rows}) g`;
}

/** Streams a query's rows through `row` events: node-postgres keeps none of them in memory. */
function streamRows(client: pg.Client, text: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    const config: pg.QueryArrayConfig = { text, rowMode: 'array' };
    const q = new pg.Query(config);
    q.on('row', () => {
      n++;
    });
    q.on('end', () => resolve(n));
    q.on('error', reject);
    void client.query(q);
  });
}

async function countOf(client: pg.Client, text: string): Promise<number> {
  const r = await client.query<{ n: string }>(text);
  return Number(r.rows[0]!.n);
}

function firstCaller(ctx: BenchContext): pg.Client {
  return ctx.callers[0]!;
}

export const LARGE_VARIANTS: readonly LargeVariant[] = [
  { id: 'direct-count', label: 'direct, counted on the server', run: (ctx, n) => countOf(firstCaller(ctx), `SELECT count(*) AS n FROM (${bigSql(n)}) s`) },
  { id: 'direct-read', label: 'direct, every row to the client', run: (ctx, n) => streamRows(firstCaller(ctx), bigSql(n)) },
  {
    id: 'dblink-count',
    label: 'dblink, counted on the caller',
    run: (ctx, n) => countOf(firstCaller(ctx), `SELECT count(*) AS n FROM dblink(${lit(ctx.connstr)}, ${lit(bigSql(n))}) AS t(i int, m text)`),
  },
  {
    id: 'dblink-read',
    label: 'dblink, every row to the client',
    run: (ctx, n) => streamRows(firstCaller(ctx), `SELECT * FROM dblink(${lit(ctx.connstr)}, ${lit(bigSql(n))}) AS t(i int, m text)`),
  },
  {
    id: 'sqlapi-count',
    label: 'SQL API (64 kB queue), counted on the caller',
    run: (ctx, n) => countOf(firstCaller(ctx), `SELECT count(*) AS n FROM ${resultOfLaunch(lit(bigSql(n)), 'r(i int, m text)')}`),
  },
  {
    id: 'sqlapi-read',
    label: 'SQL API (64 kB queue), every row to the client',
    run: (ctx, n) => streamRows(firstCaller(ctx), `SELECT r.* FROM ${resultOfLaunch(lit(bigSql(n)), 'r(i int, m text)')}`),
  },
  {
    id: 'library-raw',
    label: 'library rawResult (text values)',
    async run(ctx, n) {
      const session = ctx.sessions[0]!;
      const raw = await session.rawResult(await session.launch(bigSql(n)));
      let count = 0;
      for await (const _row of raw.rows) count++;
      return count;
    },
  },
  {
    id: 'library-rows',
    label: 'library rows (typed values)',
    async run(ctx, n) {
      const session = ctx.sessions[0]!;
      let count = 0;
      for await (const _row of session.rows(await session.launch(bigSql(n)), { rowMode: 'array' })) count++;
      return count;
    },
  },
];

export async function timeLarge(ctx: BenchContext, variant: LargeVariant, rows: number): Promise<number> {
  const t0 = nowMs();
  const seen = await variant.run(ctx, rows);
  const ms = nowMs() - t0;
  if (seen !== rows) throw new Error(`${variant.id}: expected ${rows} rows, saw ${seen}`);
  return ms;
}
