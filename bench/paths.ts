/**
 * The ways of running one small job that the benchmark compares, each driven
 * by one caller connection per concurrent caller.
 */
import type pg from 'pg';
import type { Engine, Session } from '../src/index.js';
import { CpuMeter, type CpuByClass } from './cpu.js';
import { lit, nowMs, resultOfLaunch, waitUntil } from './util.js';

export type JobKind = 'insert' | 'select1';
export type Tier = 'fast' | 'medium' | 'slow';

export const JOB_SQL: Record<JobKind, string> = {
  insert: "INSERT INTO log(msg) VALUES ('x')",
  select1: 'SELECT 1',
};

export interface BenchContext {
  /** libpq string of the embedded PostgreSQL itself (for dblink). */
  connstr: string;
  /** One connection per concurrent caller. */
  callers: pg.Client[];
  /** For bookkeeping queries outside the timed loops. */
  admin: pg.Client;
  /** CPU time of every process taking part (pgbg server, backends, the bench itself). */
  cpu: CpuMeter;
  engine: Engine;
  /** One library session per caller, its launcher being that caller's connection. */
  sessions: Session[];
}

export interface PathDef {
  id: string;
  label: string;
  kinds: readonly JobKind[];
  /**
   * How many jobs a measurement runs is set per tier, so every path gets a
   * fixed job count and the run stays bounded: 'slow' forks a backend per job.
   */
  tier: Tier;
  /** Jobs are detached: a batch ends only when their INSERTs have committed. */
  detached?: boolean;
  /** Runs one job on caller `c`; resolves to the latency to report, in ms. */
  run(ctx: BenchContext, c: number, kind: JobKind): Promise<number>;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = nowMs();
  await fn();
  return nowMs() - t0;
}

function caller(ctx: BenchContext, c: number): pg.Client {
  const client = ctx.callers[c];
  if (!client) throw new Error(`no caller connection #${c}`);
  return client;
}

/** Caller connections that have opened their persistent dblink connection. */
const persistent = new WeakSet<pg.Client>();

/** Result column lists: a row-less statement's command tag comes back as one text column. */
const COLUMNS: Record<JobKind, string> = { insert: '(tag text)', select1: '(x int)' };

export const PATHS: readonly PathDef[] = [
  {
    id: 'floor',
    label: 'direct SQL (floor)',
    kinds: ['insert', 'select1'],
    tier: 'fast',
    run: (ctx, c, kind) => timed(() => caller(ctx, c).query(JOB_SQL[kind])),
  },
  {
    id: 'dblink',
    label: 'dblink, one-shot connection',
    kinds: ['insert', 'select1'],
    tier: 'slow',
    run: (ctx, c, kind) =>
      timed(() =>
        caller(ctx, c).query(
          kind === 'insert'
            ? `SELECT dblink_exec(${lit(ctx.connstr)}, ${lit(JOB_SQL.insert)})`
            : `SELECT * FROM dblink(${lit(ctx.connstr)}, ${lit(JOB_SQL.select1)}) AS t(x int)`,
        ),
      ),
  },
  {
    id: 'dblink-persistent',
    label: 'dblink, persistent connection',
    kinds: ['insert', 'select1'],
    tier: 'fast',
    async run(ctx, c, kind) {
      const client = caller(ctx, c);
      // dblink_connect once per caller session (the warm-up pays for it), as autonomous-transaction code does.
      if (!persistent.has(client)) {
        await client.query(`SELECT dblink_connect('bench_persistent', ${lit(ctx.connstr)})`);
        persistent.add(client);
      }
      return timed(() =>
        client.query(
          kind === 'insert'
            ? `SELECT dblink_exec('bench_persistent', ${lit(JOB_SQL.insert)})`
            : `SELECT * FROM dblink('bench_persistent', ${lit(JOB_SQL.select1)}) AS t(x int)`,
        ),
      );
    },
  },
  {
    id: 'sqlapi-result',
    label: 'SQL API launch + result',
    kinds: ['insert', 'select1'],
    tier: 'medium',
    run: (ctx, c, kind) =>
      timed(() => caller(ctx, c).query(`SELECT r.* FROM ${resultOfLaunch(lit(JOB_SQL[kind]), `r${COLUMNS[kind]}`)}`)),
  },
  {
    id: 'sqlapi-launch',
    label: 'SQL API launch (+ detach, untimed)',
    kinds: ['insert', 'select1'],
    tier: 'medium',
    detached: true,
    async run(ctx, c, kind) {
      const client = caller(ctx, c);
      const t0 = nowMs();
      const r = await client.query<{ pid: number; cookie: string }>(`SELECT * FROM pg_background_launch(${lit(JOB_SQL[kind])})`);
      const ms = nowMs() - t0;
      const h = r.rows[0]!;
      await client.query('SELECT pg_background_detach($1, $2)', [h.pid, h.cookie]);
      return ms;
    },
  },
  {
    id: 'sqlapi-submit',
    label: 'SQL API submit + detach',
    kinds: ['insert'],
    tier: 'medium',
    detached: true,
    run: (ctx, c, kind) =>
      // Submitted handles stay tracked (and count against max_workers) until detached.
      timed(() => caller(ctx, c).query(`SELECT pg_background_detach(h.pid, h.cookie) FROM pg_background_submit(${lit(JOB_SQL[kind])}) h`)),
  },
  {
    id: 'sqlapi-run',
    label: 'SQL API run (launch, wait, outcome)',
    kinds: ['insert', 'select1'],
    tier: 'medium',
    run: (ctx, c, kind) => timed(() => caller(ctx, c).query(`SELECT has_error FROM pg_background_run(${lit(JOB_SQL[kind])})`)),
  },
  {
    id: 'library',
    label: 'library launch + result',
    kinds: ['insert', 'select1'],
    tier: 'medium',
    async run(ctx, c, kind) {
      const session = ctx.sessions[c];
      if (!session) throw new Error(`no library session #${c}`);
      const t0 = nowMs();
      await session.result(await session.launch(JOB_SQL[kind]));
      return nowMs() - t0;
    },
  },
];

export interface BatchResult {
  latencies: number[];
  wallMs: number;
  /** CPU each class of process used during the batch, in ms. */
  cpu: CpuByClass;
}

/**
 * `jobs` jobs split evenly over `callers` concurrent callers, each running its
 * share back to back. Wall time includes, for detached INSERTs, the wait until
 * all of them have committed, so jobs/s counts finished work.
 */
export async function runBatch(ctx: BenchContext, path: PathDef, kind: JobKind, callers: number, jobs: number, settleTimeoutMs: number): Promise<BatchResult> {
  const perCaller = Math.max(1, Math.floor(jobs / callers));
  const countRows = async () => Number((await ctx.admin.query<{ n: string }>('SELECT count(*) AS n FROM log')).rows[0]!.n);
  const awaitCommits = path.detached && kind === 'insert';
  const before = awaitCommits ? await countRows() : 0;
  const latencies: number[] = [];
  const cpu0 = await ctx.cpu.snapshot();
  const t0 = nowMs();
  await Promise.all(
    Array.from({ length: callers }, async (_, c) => {
      for (let i = 0; i < perCaller; i++) latencies.push(await path.run(ctx, c, kind));
    }),
  );
  if (awaitCommits) {
    const expected = before + perCaller * callers;
    await waitUntil(async () => (await countRows()) >= expected, settleTimeoutMs, `${path.id}: detached INSERTs committing`);
  }
  const wallMs = nowMs() - t0;
  return { latencies, wallMs, cpu: CpuMeter.diff(cpu0, await ctx.cpu.snapshot()) };
}
