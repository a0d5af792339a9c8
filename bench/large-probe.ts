/**
 * What one large result costs the pgbg server: for each of N queries of 1M
 * rows `(int, md5)` counted in the caller through the SQL API, the wall time
 * and the server's user and system CPU and minor page faults, read from /proc
 * around the query. Quicker than the large section of `npm run bench` (one
 * path, no warm-up of thousands of small jobs), for A/B comparisons of two
 * builds run alternately:
 *   npm run build && node --import tsx bench/large-probe.ts [label] [queries] [pause-ms]
 * `pause-ms` leaves the server quiet before each query: longer than its
 * `--release-memory-ms` (3 s), it measures results that arrive after a quiet
 * spell, once the server has collected garbage and V8 has shrunk its heap.
 * Prints one line per query, then the medians.
 */
import { withProbeServer } from './probe-server.js';
import { countersOf } from './server.js';
import { spread } from './stats.js';
import { resultOfLaunch, sleep } from './util.js';

const ROWS = 1_000_000;
const MAX_QUERIES = 50;
const MAX_PAUSE_MS = 60_000;

function countedSql(rows: number): string {
  return `SELECT count(*) AS n FROM ${resultOfLaunch(`'SELECT g, md5(g::text) FROM generate_series(1, ${rows}) g'`, 'r(i int, m text)')}`;
}

async function main(): Promise<void> {
  const label = process.argv[2] ?? 'this build';
  const queries = Math.min(MAX_QUERIES, Math.max(1, Number(process.argv[3] ?? 5)));
  const pauseMs = Math.min(MAX_PAUSE_MS, Math.max(0, Number(process.argv[4] ?? 0)));
  await withProbeServer('large-probe', async (server, client) => {
    // Untimed: the first large results after start pay for JIT and heap growth.
    for (let i = 0; i < 3; i++) await client.query(countedSql(ROWS / 10));
    const lines: { wallMs: number; userMs: number; systemMs: number; minorFaults: number }[] = [];
    for (let q = 0; q < queries; q++) {
      if (pauseMs > 0) await sleep(pauseMs);
      const before = await countersOf(server.pid);
      const t0 = performance.now();
      const { rows } = await client.query<{ n: string }>(countedSql(ROWS));
      const wallMs = performance.now() - t0;
      const after = await countersOf(server.pid);
      if (Number(rows[0]!.n) !== ROWS) throw new Error(`counted ${rows[0]!.n} rows, not ${ROWS}`);
      const line = {
        wallMs,
        userMs: after.userMs - before.userMs,
        systemMs: after.systemMs - before.systemMs,
        minorFaults: after.minorFaults - before.minorFaults,
      };
      lines.push(line);
      console.log(`${label}: wall ${wallMs.toFixed(0)} ms, server user ${line.userMs.toFixed(0)} ms, system ${line.systemMs.toFixed(0)} ms, minor faults ${line.minorFaults}`);
    }
    const med = (pick: (l: (typeof lines)[number]) => number) => spread(lines.map(pick)).median.toFixed(0);
    console.log(
      `${label} medians of ${queries}${pauseMs > 0 ? `, each after ${pauseMs} ms of quiet` : ''}: wall ${med((l) => l.wallMs)} ms, server CPU ${med((l) => l.userMs + l.systemMs)} ms ` +
        `(system ${med((l) => l.systemMs)}), minor faults ${med((l) => l.minorFaults)}`,
    );
  });
}

await main();
