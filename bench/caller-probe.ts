/**
 * Where a SQL API call's CPU goes in the caller's backend: each piece run in a
 * PL/pgSQL loop on one connection, timed inside the backend (wall) and by the
 * backend's CPU time from /proc, per call. 1 caller, a fresh server:
 *   npm run build && node --import tsx bench/caller-probe.ts
 */
import type pg from 'pg';
import { withProbeServer } from './probe-server.js';
import { resultOfLaunch } from './util.js';
import { cpuMsOf } from './server.js';

interface Piece {
  label: string;
  /** One PL/pgSQL statement (the loop declares `x text`). */
  body: string;
  calls: number;
}

/** A request the pgbg server answers itself, without a worker: one dblink round trip and nothing else. */
const ROUND_TRIP = "'SET client_encoding TO ''UTF8'''";

const PIECES: readonly Piece[] = [
  { label: 'pgbg_private.conn(): the connection check', body: 'x := pgbg_private.conn()', calls: 20_000 },
  { label: "pgbg_private.caller_settings(): the caller's settings", body: 'x := pgbg_private.caller_settings()::text', calls: 20_000 },
  { label: 'dblink_exec: one round trip to the pgbg server', body: `x := dblink_exec(pgbg_private.conn(), ${ROUND_TRIP})`, calls: 5_000 },
  {
    label: 'dblink_send_query + 2 × dblink_get_result: the same, asynchronous',
    body: `x := pgbg_private.conn(); PERFORM dblink_send_query(x, ${ROUND_TRIP}); PERFORM * FROM dblink_get_result(x) AS t(y text); PERFORM * FROM dblink_get_result(x) AS t(y text)`,
    calls: 5_000,
  },
  { label: 'submit + detach of SELECT 1', body: "PERFORM pg_background_detach(s.pid, s.cookie) FROM pg_background_submit('SELECT 1') s", calls: 2_000 },
  { label: 'launch + detach of SELECT 1', body: "PERFORM pg_background_detach(s.pid, s.cookie) FROM pg_background_launch('SELECT 1') s", calls: 2_000 },
  { label: 'launch + result of SELECT 1', body: `PERFORM * FROM ${resultOfLaunch("'SELECT 1'", 'r(y int)')}`, calls: 2_000 },
];

async function main(): Promise<void> {
  await withProbeServer('caller-probe', async (_server, client) => {
    await client.query('CREATE EXTENSION IF NOT EXISTS dblink');
    const backend = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    // Untimed: the first calls open the dblink connection and fill the backend's caches.
    for (const piece of PIECES) await runLoop(client, piece.body, 50);
    console.log('µs per call in the caller backend (1 caller)      wall      CPU');
    for (const piece of PIECES) {
      const cpu0 = await cpuMsOf(backend);
      const wallUs = await runLoop(client, piece.body, piece.calls);
      const cpuUs = (((await cpuMsOf(backend)) - cpu0) * 1000) / piece.calls;
      console.log(`  ${piece.label.padEnd(66)} ${wallUs.toFixed(1).padStart(7)}  ${cpuUs.toFixed(1).padStart(7)}`);
    }
  });
}

/** Runs `body` `calls` times in one DO block; resolves to the backend's own wall time per call, in µs. */
async function runLoop(client: pg.Client, body: string, calls: number): Promise<number> {
  await client.query(`DO $$
DECLARE
  t0 timestamptz := clock_timestamp();
  x text;
BEGIN
  FOR i IN 1..${calls} LOOP
    ${body};
  END LOOP;
  PERFORM set_config('pgbg_probe.us_per_call', (extract(epoch FROM clock_timestamp() - t0) * 1e6 / ${calls})::text, false);
END $$`);
  const r = await client.query<{ us: string }>("SELECT current_setting('pgbg_probe.us_per_call') AS us");
  return Number(r.rows[0]!.us);
}

await main();
