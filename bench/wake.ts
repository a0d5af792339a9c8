/**
 * How soon a waiting caller learns that a job ended (pg_background 2.0's
 * `wait_any` and `wait`, which the C extension implements by polling every
 * 50–800 ms). Each job's last act is to read the clock; the caller reads it
 * again the moment its wait returns; the difference is the wake-up delay: the
 * job's commit, the server learning of the end, its answer through dblink.
 * Both clocks are PostgreSQL's, on one machine.
 */
import type pg from 'pg';
import { percentile } from './stats.js';

export interface WakeFigure {
  /** `wait_any` over `jobs` running jobs, or `wait` on one. */
  call: 'wait_any' | 'wait';
  jobs: number;
  waits: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Waits left out: the job had ended before the wait began. */
  endedBeforeWait: number;
}

/** A job that sleeps `seconds` and then reads the clock: its end, to the microsecond. */
const job = (seconds: number) => `SELECT clock_timestamp() AS ended FROM pg_sleep(${seconds})`;

interface Handle { pid: number; cookie: string }

/** A pg_background_handle[] of `n` handles given as parameters pid, cookie, pid, cookie… */
const handleArray = (n: number) =>
  `ARRAY[${Array.from({ length: n }, (_, k) => `ROW($${2 * k + 1}::int4, $${2 * k + 2}::int8)::pg_background_handle`).join(', ')}]`;

async function launch(client: pg.Client, sql: string): Promise<Handle> {
  return (await client.query<Handle>('SELECT (h).pid, (h).cookie FROM (SELECT pg_background_launch($1) AS h) s', [sql])).rows[0]!;
}

/**
 * Milliseconds from the winner's end to the caller's wake-up, read back from the
 * winner's result; undefined if the job ended before the wait began (nothing to wake).
 */
async function delayOf(client: pg.Client, winner: Handle, wait: { began: string; woke: string }): Promise<number | undefined> {
  const r = await client.query<{ ms: number; before: boolean }>(
    `SELECT extract(epoch FROM $4::timestamptz - ended)::float8 * 1000 AS ms, ended < $3::timestamptz AS before
       FROM pg_background_result($1, $2) AS (ended timestamptz)`,
    [winner.pid, winner.cookie, wait.began, wait.woke],
  );
  return r.rows[0]!.before ? undefined : r.rows[0]!.ms;
}

/** `statement_timestamp()` is when the wait's statement began; `clock_timestamp()`, read after the wait, when it returned. */
const TIMES = 'statement_timestamp()::text AS began, clock_timestamp()::text AS woke';

async function waitAnyDelay(client: pg.Client): Promise<number | undefined> {
  // Three jobs ending 50, 100 and 150 ms after launch: the first to end wins.
  const handles = [await launch(client, job(0.05)), await launch(client, job(0.1)), await launch(client, job(0.15))];
  const params = handles.flatMap((h) => [h.pid, h.cookie]);
  const r = await client.query<Handle & { began: string; woke: string }>(
    `SELECT (w).pid, (w).cookie, ${TIMES} FROM (SELECT pg_background_wait_any(${handleArray(handles.length)}) AS w OFFSET 0) s`, params);
  const delay = await delayOf(client, r.rows[0]!, r.rows[0]!);
  await client.query(`SELECT count(*) FROM pg_background_drain(${handleArray(handles.length)})`, params);
  return delay;
}

async function waitDelay(client: pg.Client): Promise<number | undefined> {
  const h = await launch(client, job(0.05));
  const r = await client.query<{ began: string; woke: string }>(`SELECT ${TIMES} FROM (SELECT pg_background_wait($1, $2) OFFSET 0) s`, [h.pid, h.cookie]);
  return delayOf(client, h, r.rows[0]!);
}

export async function runWake(client: pg.Client, waits: number): Promise<WakeFigure[]> {
  const figures: WakeFigure[] = [];
  for (const [call, jobs, measure] of [['wait_any', 3, waitAnyDelay], ['wait', 1, waitDelay]] as const) {
    await measure(client); // untimed: the first request of a role opens its connection
    const delays: number[] = [];
    let early = 0;
    for (let i = 0; i < waits; i++) {
      const d = await measure(client);
      if (d === undefined) early++;
      else delays.push(d);
    }
    figures.push({ ...summary(call, jobs, delays), endedBeforeWait: early });
  }
  return figures;
}

function summary(call: WakeFigure['call'], jobs: number, delays: number[]): Omit<WakeFigure, 'endedBeforeWait'> {
  return { call, jobs, waits: delays.length, p50Ms: percentile(delays, 50), p99Ms: percentile(delays, 99), maxMs: Math.max(...delays) };
}
