/**
 * The soak: starts `pgbg serve --embedded`, makes the roles and the caller
 * sessions, runs the seeded mix (SQL callers and the library's races side by
 * side), checks the invariants as it goes and after the drain, and returns
 * what it covered. Everything it starts is stopped and removed, failed or not.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { continuousCheck, finalCheck, until, workerBackends, type FinalFigures } from './checks.js';
import { Ledger } from './ledger.js';
import { runLibrary } from './library.js';
import { MemoryLog, type QuietReading } from './memory.js';
import type { SoakOptions } from './options.js';
import { Prng } from './prng.js';
import { startSoakServer, type SoakServer } from './server.js';
import { SqlCaller, type StaleHandle } from './sql-session.js';

export interface SoakSummary {
  pass: boolean;
  seed: number;
  options: SoakOptions;
  durationS: number;
  jobs: { sql: number; library: number };
  ops: Record<string, number>;
  /** Milliseconds the SQL calls of each kind took, in all (over every session). */
  opMs: Record<string, number>;
  errorsBySqlstate: Record<string, number>;
  staleHandleChecks: Record<string, number>;
  raceRounds: number;
  racePatterns: Record<string, number>;
  fates: FinalFigures | undefined;
  rss: { startMb: number; warm: QuietReading | undefined; end: QuietReading | undefined; maxMb: number; slopeMbPer1000Jobs: number | undefined; samples: number; enforced: boolean };
  heap: { fullCollections: number; slopeMbPer1000Jobs: number | undefined; quietGrowthMb: number | undefined; limitMb: number };
  workers: { baseline: number; peak: number; afterRun: number | undefined; returned: boolean };
  knownIssues: Record<string, { count: number; examples: string[] }>;
  violations: string[];
}

/** What must be stopped if the process is told to end mid-run (SIGINT, SIGTERM, its own deadline): the server and its data. */
export const stopOnExit = new Set<() => Promise<void>>();

/**
 * Heap growth (after a full collection, quiet, end against warm-up) allowed on a long run. The
 * quiet heap of an idle server is ~15 MB, and what it keeps per job is bounded (a session
 * remembers 1024 consumed handles; the journal flushes its queue): 16 MB more is a leak of about
 * 200 bytes per job over 80,000 jobs.
 */
const HEAP_GROWTH_LIMIT_MB = 16;
/** Idle worker connections close after this long (serve --idle-timeout-ms): the count returns to its baseline soon after the run. */
const IDLE_TIMEOUT_MS = 500;
const MAX_TRACKED = 8;

export async function runSoak(options: SoakOptions, root: string, log: (line: string) => void): Promise<SoakSummary> {
  const t0 = performance.now();
  // Launches stop at the deadline with room left for the drain, the checks and the stop.
  const deadlineAt = t0 + options.deadlineMs * 0.85;
  const ledger = new Ledger(options.seed, new Set(options.tolerate));
  const at = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
  log(`soak: seed ${options.seed}, ${options.jobs} jobs, ${options.sessions} sessions, ${options.roles} roles, ${options.libraryRounds} library rounds; starting pgbg serve --embedded (${options.server})`);
  const server = await startSoakServer({
    root, mode: options.server, maxConnections: options.sessions * MAX_TRACKED + 64, idleTimeoutMs: IDLE_TIMEOUT_MS, dataRoot: options.dataRoot,
    register: (stop) => stopOnExit.add(stop),
  });
  log(`soak: server ready at ${at()} (pid ${server.pid}, PostgreSQL on ${server.host}:${server.port})`);
  const memory = new MemoryLog(server);
  const clients: pg.Client[] = [];
  const connect = async (user: string, password: string): Promise<pg.Client> => {
    const c = new pg.Client({ host: server.host, port: server.port, database: server.database, user, password, query_timeout: 120_000 });
    c.on('error', (err) => ledger.violation(`connection of ${user} failed: ${err.message}`));
    await c.connect();
    clients.push(c);
    return c;
  };
  const workers = { baseline: 0, peak: 0, afterRun: undefined as number | undefined, returned: false };
  let fates: FinalFigures | undefined;
  try {
    const admin = await connect(server.user, server.password);
    await admin.query('CREATE TABLE soak_effects (job_id int4 NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp()); CREATE INDEX ON soak_effects (job_id)');
    const roles: { name: string; password: string }[] = [];
    for (let i = 0; i < options.roles; i++) {
      const role = { name: `soak_r${i}`, password: randomBytes(12).toString('hex') };
      await admin.query(`CREATE ROLE ${role.name} LOGIN PASSWORD '${role.password}'; GRANT INSERT, SELECT ON soak_effects TO ${role.name}`);
      const ok = (await admin.query<{ ok: boolean }>('SELECT pg_background_grant_privileges($1) AS ok', [role.name])).rows[0]?.ok;
      if (ok !== true) throw new Error(`pg_background_grant_privileges('${role.name}') answered ${ok}`);
      roles.push(role);
    }
    workers.baseline = (await workerBackends(admin)).server;
    memory.startMb = await server.rssMb();

    // The warm-up checkpoint: every loop arrives, then the server's memory is read once quiet.
    const participants = options.sessions + 1;
    let arrivedCount = 0;
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const checkpoint = async () => {
      if (++arrivedCount === participants) {
        await until(10_000, async () => (await workerBackends(admin)).active === 0);
        await until(IDLE_TIMEOUT_MS * 3 + 5000, async () => (await workerBackends(admin)).server <= workers.baseline);
        memory.warmJobs = ledger.jobsLaunched;
        memory.warm = await memory.quiet(performance.now(), 8000);
        log(`soak: warm-up checkpoint at ${at()} (${ledger.jobsLaunched} jobs): RSS ${memory.warm.rssMb.toFixed(1)} MB, heap ${memory.warm.heapMb?.toFixed(1) ?? '?'} MB once quiet`);
        release();
      }
      await released;
    };

    // Memory samples and effect checks every so many calls, one at a time, behind the callers.
    const every = Math.max(20, Math.round((options.jobs * 5) / 200));
    let calls = 0;
    let chain = Promise.resolve();
    const tick = () => {
      if (++calls % every !== 0) return;
      chain = chain.then(async () => {
        await memory.sample(ledger.jobsLaunched);
        await continuousCheck(admin, ledger);
        workers.peak = Math.max(workers.peak, (await workerBackends(admin)).server);
      }).catch((err: unknown) => ledger.violation(`continuous check failed: ${(err as Error).message}`));
    };

    const per = Math.floor(options.jobs / options.sessions);
    const callers: SqlCaller[] = [];
    for (let s = 0; s < options.sessions; s++) {
      const role = roles[s % roles.length]!;
      const first = 1 + s * per;
      const end = s === options.sessions - 1 ? options.jobs + 1 : first + per;
      callers.push(new SqlCaller({
        index: s, role: role.name, client: await connect(role.name, role.password), rng: new Prng(options.seed, 1000 + s), ledger,
        first, end, warmEnd: first + Math.round((end - first) * options.warmup), maxRows: options.maxRows, deadlineAt, checkpoint, tick,
        foreign: () => callers.filter((c) => c !== callers[s]).flatMap((c): StaleHandle[] => [...c.stale, ...c.tracked.map((t) => ({ pid: t.pid, cookie: t.cookie, id: t.rec.spec.id }))]),
      }));
    }
    const lib = roles[0]!;
    const loops = [
      ...callers.map((c, s) => c.run().catch((err: unknown) => ledger.violation(`session ${s} stopped: ${(err as Error).stack ?? String(err)}`))),
      runLibrary({
        ledger, rng: new Prng(options.seed, 7), connection: { host: server.host, port: server.port, database: server.database, user: lib.name, password: lib.password },
        role: lib.name, rounds: options.libraryRounds, warmRounds: Math.round(options.libraryRounds * options.warmup), maxRows: options.maxRows, deadlineAt, checkpoint, tick,
      }).catch((err: unknown) => ledger.violation(`the library loop stopped: ${(err as Error).stack ?? String(err)}`)),
    ];
    await Promise.all(loops);
    await chain;
    if (performance.now() > deadlineAt) ledger.violation(`the deadline (${options.deadlineMs / 1000} s) passed: launches stopped at ${ledger.jobsLaunched} jobs`);
    log(`soak: ${ledger.jobsLaunched} jobs done at ${at()}; draining and checking`);

    // Detached and submitted jobs run on: wait until no worker runs one, then check everything.
    if (!(await until(60_000, async () => (await workerBackends(admin)).active === 0))) ledger.violation('workers still running jobs 60 s after the drain');
    await continuousCheck(admin, ledger);
    fates = await finalCheck(admin, ledger);
    workers.returned = await until(IDLE_TIMEOUT_MS * 3 + 10_000, async () => {
      const w = await workerBackends(admin);
      workers.afterRun = w.server + w.library;
      return w.server <= workers.baseline && w.library === 0;
    });
    if (!workers.returned) ledger.violation(`worker connections did not return to the idle level (${workers.baseline}): ${workers.afterRun} left`);
    memory.end = await memory.quiet(performance.now(), 8000);
    await memory.sample(ledger.jobsLaunched);
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    await server.stop();
    stopOnExit.delete(server.stop);
  }
  return summarize(options, ledger, memory, server, workers, fates, (performance.now() - t0) / 1000);
}

function summarize(
  options: SoakOptions, ledger: Ledger, memory: MemoryLog, server: SoakServer, workers: SoakSummary['workers'], fates: FinalFigures | undefined, durationS: number,
): SoakSummary {
  const slope = memory.rssSlope();
  const enforced = ledger.jobsLaunched - memory.warmJobs >= options.rssEnforceFrom;
  if (enforced && slope !== undefined && slope > options.rssSlopeLimit) {
    ledger.violation(`server RSS grew ${slope.toFixed(2)} MB per 1,000 jobs after the warm-up (limit ${options.rssSlopeLimit})`);
  }
  const heapGrowth = memory.end?.heapMb !== undefined && memory.warm?.heapMb !== undefined ? memory.end.heapMb - memory.warm.heapMb : undefined;
  if (enforced && heapGrowth !== undefined && heapGrowth > HEAP_GROWTH_LIMIT_MB) {
    ledger.violation(`server heap (quiet, after a full collection) grew ${heapGrowth.toFixed(1)} MB after the warm-up (limit ${HEAP_GROWTH_LIMIT_MB})`);
  }
  const sort = (m: Map<string, number>) => Object.fromEntries([...m.entries()].sort(([a], [b]) => a.localeCompare(b)));
  const library = [...ledger.jobs.values()].filter((r) => r.via === 'library').length;
  return {
    pass: ledger.violations.length === 0,
    seed: options.seed,
    options,
    durationS,
    jobs: { sql: ledger.jobs.size - library, library },
    ops: sort(ledger.ops),
    opMs: Object.fromEntries([...ledger.opMs.entries()].sort(([, a], [, b]) => b - a).map(([k, v]) => [k, Math.round(v)])),
    errorsBySqlstate: sort(ledger.errors),
    staleHandleChecks: sort(ledger.stale),
    raceRounds: ledger.libraryRounds,
    racePatterns: sort(ledger.raceOutcomes),
    fates,
    rss: { startMb: memory.startMb, warm: memory.warm, end: memory.end, maxMb: memory.maxRss(), slopeMbPer1000Jobs: slope, samples: memory.samples.length, enforced },
    heap: {
      fullCollections: server.gc.filter((g) => g.kind.startsWith('Mark-Compact')).length, slopeMbPer1000Jobs: memory.heapSlope(), quietGrowthMb: heapGrowth, limitMb: HEAP_GROWTH_LIMIT_MB,
    },
    workers,
    knownIssues: Object.fromEntries(ledger.issues),
    violations: ledger.violations,
  };
}
