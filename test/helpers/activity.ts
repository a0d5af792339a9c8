/**
 * Bounded polls on what the server says a backend is doing (pg_stat_activity),
 * for tests that must know a job reached a point, or has ended, before they
 * look at its effects. Each poll gives up (failing the test) at its deadline.
 */
import assert from 'node:assert/strict';
import pg from 'pg';

export interface Activity {
  state: string | null;
  wait_event_type: string | null;
  wait_event: string | null;
  query: string;
}

const POLL_MS = 20;

function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Polls `pid`'s row of pg_stat_activity (undefined once the backend has exited)
 * through a connection to `url` until `cond` holds, for up to `timeoutMs`.
 */
export async function untilActivity(
  url: string, pid: number, cond: (row: Activity | undefined) => boolean, what: string, timeoutMs = 15_000,
): Promise<Activity | undefined> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    let row: Activity | undefined;
    for (let i = 0; ; i++) {
      row = (await c.query<Activity>('SELECT state, wait_event_type, wait_event, query FROM pg_catalog.pg_stat_activity WHERE pid = $1', [pid])).rows[0];
      if (cond(row)) return row;
      if (Date.now() > deadline || i > timeoutMs / POLL_MS) break;
      await pause(POLL_MS);
    }
    assert.fail(`backend ${pid}: not within ${timeoutMs} ms: ${what}; last seen ${row ? JSON.stringify(row) : 'gone'}`);
  } finally {
    await c.end();
  }
}

/** Until the backend sits in pg_sleep (wait_event PgSleep). */
export async function untilSleeping(url: string, pid: number): Promise<void> {
  await untilActivity(url, pid, (r) => r?.wait_event === 'PgSleep', 'in pg_sleep');
}

/**
 * Until the backend is no longer running a statement containing `marker`: it has
 * exited, or (a pooled worker stays connected) it is idle or runs something else.
 * Its transaction is over then: committed or rolled back.
 */
export async function untilLeft(url: string, pid: number, marker: string): Promise<void> {
  await untilActivity(url, pid, (r) => r === undefined || r.state === 'idle' || !r.query.includes(marker), `left the query with ${JSON.stringify(marker)}`);
}

/** Until the backend has exited. */
export async function untilGone(url: string, pid: number): Promise<void> {
  await untilActivity(url, pid, (r) => r === undefined, 'exited');
}

/** Until the backend is blocked writing to its client (wait_event ClientWrite). */
export async function untilClientWrite(url: string, pid: number): Promise<void> {
  await untilActivity(url, pid, (r) => r?.wait_event === 'ClientWrite', 'blocked writing to its client (ClientWrite)');
}

/** Polls `cond` (bounded by `timeoutMs`) until it holds; fails the test otherwise. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i <= timeoutMs / POLL_MS; i++) {
    if (await cond()) return;
    if (Date.now() > deadline) break;
    await pause(POLL_MS);
  }
  assert.fail(`not within ${timeoutMs} ms: ${what}`);
}

/** As `until`, for a condition that may fail while what it checks recovers (a restart): a failure counts as not yet. */
export function untilRecovered(cond: () => Promise<boolean>, what: string, timeoutMs?: number): Promise<void> {
  return until(() => cond().catch(() => false), what, timeoutMs);
}
