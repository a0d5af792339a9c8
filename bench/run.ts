/**
 * `npm run bench [-- --quick]`: small jobs, large results and server memory,
 * side by side on one embedded PostgreSQL served by `pgbg serve --embedded`.
 * Tables go to stdout, progress to stderr; JSON and an SVG chart to bench/results/
 * (latest.json and chart.svg from full runs, latest-quick.json and chart-quick.svg
 * from quick ones, plus one timestamped JSON per run).
 *
 * `--only latency,wake,large,memory` runs some sections (for profiling one of them).
 * BENCH_SERVER_CPU_PROF=<dir> runs the server child with `node --cpu-prof`
 * (its profile is written when it stops); summarize it with bench/profile.ts.
 */
import os from 'node:os';
import path from 'node:path';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import pg from 'pg';
import { Engine, type Session } from '../src/index.js';
import { runProbes } from './breakdown.js';
import { CALLER_APP_NAME, CPU_CLASSES, CpuMeter, machineBusyMs, type CpuClass } from './cpu.js';
import { renderChart } from './chart.js';
import { LARGE_VARIANTS, timeLarge } from './large.js';
import { runMemory, type MemoryConfig } from './memory.js';
import { PATHS, runBatch, type BenchContext, type JobKind, type Tier } from './paths.js';
import { breakdownTable, checkTargets, cpuTable, largeTable, latencyTable, memoryTable, targetsTable, wakeTable } from './report.js';
import type { BenchResults, LargeFigure, LatencyFigure } from './results.js';
import { startServer, type ServerUnderTest } from './server.js';
import { percentile, spread, type Spread } from './stats.js';
import { nowMs, sleep, withTimeout } from './util.js';
import { runWake } from './wake.js';

interface Config {
  mode: 'quick' | 'full';
  callers: number[];
  /**
   * Untimed jobs each pgbg path runs at the most callers before anything is
   * measured: the engine (in this process), the server and their worker pools
   * reach their steady state only after a few thousand jobs (JIT, heap sizing,
   * pool growth); the library's first 1,000 jobs run at under half its steady rate.
   */
  steadyJobs: number;
  /** Jobs per warm-up and per measured repetition, by path tier (see PathDef.tier). */
  warmup: Record<Tier, number>;
  jobs: Record<Tier, number>;
  reps: number;
  /** Calls per launch-breakdown probe. */
  probeJobs: number;
  /** Waits per wake-up figure. */
  wakeWaits: number;
  largeRows: number;
  largeReps: number;
  memory: MemoryConfig;
  /** The whole run is abandoned (and the server stopped) after this long. */
  deadlineMs: number;
  queryTimeoutMs: number;
}

const MAX_CALLERS = 4;

function config(quick: boolean): Config {
  const queryTimeoutMs = 120_000;
  return quick
    ? {
        mode: 'quick', callers: [1, MAX_CALLERS], steadyJobs: 200,
        warmup: { fast: 20, medium: 20, slow: 4 }, jobs: { fast: 200, medium: 200, slow: 20 }, reps: 2, probeJobs: 100, wakeWaits: 10,
        largeRows: 100_000, largeReps: 1,
        memory: { roles: 4, jobsPerRole: 4, rowsPerJob: 10_000, queueBytes: 64 * 1024, holdMs: 1500, settleMs: 15_000, rounds: 2, queryTimeoutMs },
        deadlineMs: 5 * 60_000, queryTimeoutMs,
      }
    : {
        mode: 'full', callers: [1, MAX_CALLERS], steadyJobs: 4000,
        warmup: { fast: 200, medium: 100, slow: 20 }, jobs: { fast: 2000, medium: 1000, slow: 200 }, reps: 5, probeJobs: 500, wakeWaits: 100,
        largeRows: 1_000_000, largeReps: 3,
        // 4 roles × 32 = 128 jobs: the most the server's pool holds at once (see memory.ts).
        memory: { roles: 4, jobsPerRole: 50, rowsPerJob: 10_000, queueBytes: 64 * 1024, holdMs: 3000, settleMs: 15_000, rounds: 2, queryTimeoutMs },
        deadlineMs: 20 * 60_000, queryTimeoutMs,
      };
}

function progress(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

async function medianRss(server: ServerUnderTest, samples: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < samples; i++) {
    xs.push(await server.rss());
    await sleep(50);
  }
  return spread(xs).median;
}

/** Brings every pgbg path to its steady state (see Config.steadyJobs); nothing here is measured. */
async function reachSteadyState(ctx: BenchContext, cfg: Config): Promise<void> {
  const paths = PATHS.filter((p) => p.tier === 'medium' && p.kinds.includes('insert'));
  progress(`steady state: ${cfg.steadyJobs} untimed jobs on each of ${paths.length} paths`);
  for (const p of paths) await runBatch(ctx, p, 'insert', MAX_CALLERS, cfg.steadyJobs, 120_000);
}

async function runLatency(ctx: BenchContext, cfg: Config): Promise<LatencyFigure[]> {
  const figures: LatencyFigure[] = [];
  for (const kind of ['insert', 'select1'] as JobKind[]) {
    for (const callers of cfg.callers) {
      const paths = PATHS.filter((p) => p.kinds.includes(kind));
      progress(`${kind}, ${callers} caller(s): warming up ${paths.length} paths`);
      for (const p of paths) await runBatch(ctx, p, kind, callers, cfg.warmup[p.tier], 60_000);
      const reps = new Map(paths.map((p) => [p.id, { p50: [] as number[], p99: [] as number[], rate: [] as number[], byClass: [] as Record<CpuClass, number>[], jobs: 0 }]));
      // Repetitions interleave the paths, so drift on a noisy machine spreads over all of them.
      for (let rep = 0; rep < cfg.reps; rep++) {
        for (const p of paths) {
          const b = await runBatch(ctx, p, kind, callers, cfg.jobs[p.tier], 60_000);
          const r = reps.get(p.id)!;
          const sorted = [...b.latencies].sort((x, y) => x - y);
          r.p50.push(percentile(sorted, 50));
          r.p99.push(percentile(sorted, 99));
          r.rate.push((b.latencies.length / b.wallMs) * 1000);
          const n = b.latencies.length;
          r.byClass.push(Object.fromEntries(CPU_CLASSES.map((c) => [c, b.cpu[c] / n])) as Record<CpuClass, number>);
          r.jobs = b.latencies.length;
        }
        progress(`${kind}, ${callers} caller(s): rep ${rep + 1}/${cfg.reps} done`);
      }
      const floorRates = reps.get('floor')?.rate;
      for (const p of paths) {
        const r = reps.get(p.id)!;
        // Paired with the floor's batch of the same repetition: drift of a noisy machine cancels out.
        const shareOfFloor = floorRates ? spread(r.rate.map((x, i) => x / floorRates[i]!)) : undefined;
        const cpuMsPerJob = Object.fromEntries(CPU_CLASSES.map((c) => [c, spread(r.byClass.map((x) => x[c]))])) as Record<CpuClass, ReturnType<typeof spread>>;
        figures.push({
          path: p.id, label: p.label, kind, callers, jobsPerRep: r.jobs,
          p50Ms: spread(r.p50), p99Ms: spread(r.p99), jobsPerSec: spread(r.rate), serverCpuMsPerJob: cpuMsPerJob.server, cpuMsPerJob,
          ...(shareOfFloor ? { shareOfFloor } : {}),
        });
      }
    }
  }
  return figures;
}

async function runLarge(ctx: BenchContext, cfg: Config): Promise<LargeFigure[]> {
  const times = new Map(LARGE_VARIANTS.map((v) => [v.id, [] as number[]]));
  // One untimed pass at a tenth of the size first: the first large result after start
  // pays for JIT and heap growth (~2 s instead of ~1.3 s for the SQL API) in every path.
  for (const v of LARGE_VARIANTS) await timeLarge(ctx, v, Math.max(1, Math.floor(cfg.largeRows / 10)));
  const cpu = new Map(LARGE_VARIANTS.map((v) => [v.id, [] as Record<CpuClass | 'machine', number>[]]));
  for (let rep = 0; rep < cfg.largeReps; rep++) {
    for (const v of LARGE_VARIANTS) {
      const before = await ctx.cpu.snapshot();
      const machineBefore = await machineBusyMs();
      times.get(v.id)!.push((await timeLarge(ctx, v, cfg.largeRows)) / 1000);
      const machine = (await machineBusyMs()) - machineBefore;
      cpu.get(v.id)!.push({ ...CpuMeter.diff(before, await ctx.cpu.snapshot()), machine });
    }
    progress(`large results: rep ${rep + 1}/${cfg.largeReps} done`);
  }
  const columns = [...CPU_CLASSES, 'machine'] as const;
  return LARGE_VARIANTS.map((v) => ({
    variant: v.id, label: v.label, rows: cfg.largeRows, seconds: spread(times.get(v.id)!),
    cpuSeconds: Object.fromEntries(columns.map((c) => [c, spread(cpu.get(v.id)!.map((r) => r[c] / 1000))])) as Record<CpuClass | 'machine', Spread>,
  }));
}

const SECTIONS = ['latency', 'wake', 'large', 'memory'] as const;
type Section = (typeof SECTIONS)[number];

function parseArgs(argv: string[]): { quick: boolean; sections: Set<Section> } {
  let quick = false;
  let sections = new Set<Section>(SECTIONS);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') quick = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const list = a === '--only' ? argv[++i] : a.slice('--only='.length);
      const names = (list ?? '').split(',').filter(Boolean);
      const bad = names.filter((n) => !(SECTIONS as readonly string[]).includes(n));
      if (names.length === 0 || bad.length > 0) throw new Error(`--only takes a list of ${SECTIONS.join(', ')}`);
      sections = new Set(names as Section[]);
    } else throw new Error(`unknown option ${a} (options: --quick, --only ${SECTIONS.join(',')})`);
  }
  return { quick, sections };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const cfg = config(args.quick);
  const root = path.resolve(import.meta.dirname, '..');
  const resultsDir = path.join(root, 'bench', 'results');
  const startedAt = new Date();
  const t0 = nowMs();

  progress(`mode ${cfg.mode}: starting pgbg serve --embedded`);
  const server = await startServer({
    root,
    dataDir: path.join(root, '.tmp', 'bench', 'data'),
    cpuProfileDir: process.env.BENCH_SERVER_CPU_PROF ? path.resolve(process.env.BENCH_SERVER_CPU_PROF) : undefined,
  });
  let stopping = false;
  const stopAll = async (code: number, why: string) => {
    if (stopping) return;
    stopping = true;
    progress(why);
    await server.stop();
    process.exit(code);
  };
  const deadline = setTimeout(() => void stopAll(1, `the run exceeded ${cfg.deadlineMs / 60_000} min: stopping`), cfg.deadlineMs);
  process.once('SIGINT', () => void stopAll(130, 'interrupted: stopping the server'));
  process.once('SIGTERM', () => void stopAll(143, 'terminated: stopping the server'));

  const clientConfig = {
    host: server.host, port: server.port, user: server.user, password: server.password, database: server.database, query_timeout: cfg.queryTimeoutMs,
  };
  // Named, so the CPU meter tells the callers' backends from the server's workers.
  const callerConfig = { ...clientConfig, application_name: CALLER_APP_NAME };
  const admin = new pg.Client(clientConfig);
  const callers = Array.from({ length: MAX_CALLERS }, () => new pg.Client(callerConfig));
  const engine = new Engine();
  let results: BenchResults;
  try {
    const rssAtReady = await medianRss(server, 10);
    await admin.connect();
    await admin.query('CREATE EXTENSION IF NOT EXISTS dblink');
    await admin.query('CREATE TABLE log(id bigserial primary key, msg text)');
    const pgVersion = (await admin.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
    for (const c of callers) await c.connect();
    const sessions: Session[] = callers.map((c) => engine.session({ launcher: c }));
    await withTimeout(engine.ready(), 60_000, 'loading the SQL parser');
    const ctx: BenchContext = { connstr: server.connstr, callers, admin, engine, sessions, cpu: new CpuMeter(admin, () => server.cpuMs()) };

    if (args.sections.has('latency') || args.sections.has('large')) await reachSteadyState(ctx, cfg);
    const latency = args.sections.has('latency') ? await runLatency(ctx, cfg) : [];
    if (args.sections.has('latency')) progress('launch breakdown');
    const breakdown = args.sections.has('latency') ? await runProbes(callers[0]!, cfg.probeJobs) : [];
    if (args.sections.has('wake')) progress(`wake-up: ${cfg.wakeWaits} waits each for wait_any and wait`);
    const wake = args.sections.has('wake') ? await runWake(callers[0]!, cfg.wakeWaits) : [];
    if (args.sections.has('large')) progress(`large results: ${cfg.largeRows} rows × ${LARGE_VARIANTS.length} paths × ${cfg.largeReps}`);
    const large = args.sections.has('large') ? await runLarge(ctx, cfg) : [];
    // The library's idle workers would hold PostgreSQL connections the memory phase needs.
    await engine.close({ graceMs: 10_000 });
    if (args.sections.has('memory')) progress(`memory: ${cfg.memory.roles * cfg.memory.jobsPerRole} unread jobs`);
    const memory = args.sections.has('memory') ? await runMemory(server, admin, cfg.memory, rssAtReady) : undefined;

    results = {
      startedAt: startedAt.toISOString(),
      mode: cfg.mode,
      durationSec: Math.round((nowMs() - t0) / 1000),
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model ?? 'unknown',
        totalMemMB: Math.round(os.totalmem() / 2 ** 20),
        platform: `${os.platform()} ${os.release()} ${os.arch()}`,
        node: process.version,
        postgres: pgVersion,
        serverAllocator: (await readFile(`/proc/${server.pid}/maps`, 'utf8')).includes('libjemalloc') ? 'jemalloc' : 'glibc',
      },
      config: { ...cfg, sections: [...args.sections] },
      latency,
      breakdown,
      large,
      wake,
      memory,
      targets: [],
    };
    results.targets = checkTargets(results);
  } finally {
    await engine.close({ graceMs: 10_000 }).catch(() => undefined);
    await Promise.all([admin, ...callers].map((c) => c.end().catch(() => undefined)));
    progress('stopping the server');
    await server.stop();
    progress('server stopped');
    clearTimeout(deadline);
  }
  results.durationSec = Math.round((nowMs() - t0) / 1000);

  await mkdir(resultsDir, { recursive: true });
  const json = JSON.stringify(results, null, 2) + '\n';
  const stamp = results.startedAt.replace(/[:.]/g, '-');
  const written = [`${stamp}.json`];
  // latest.json and chart.svg (the one the README shows) come from complete full runs only;
  // a quick run keeps its own copies, a partial run (--only) just its timestamped file.
  const complete = SECTIONS.every((x) => args.sections.has(x));
  if (complete) {
    const suffix = cfg.mode === 'full' ? '' : `-${cfg.mode}`;
    written.push(`latest${suffix}.json`, `chart${suffix}.svg`);
  }
  for (const file of written) {
    await writeFile(path.join(resultsDir, file), file.endsWith('.svg') ? renderChart(results) : json);
  }

  const m = results.machine;
  const out = [
    `pgbg bench (${results.mode}), ${results.startedAt}: ${m.cpus} × ${m.cpuModel}, ${m.totalMemMB} MB, Node ${m.node}, PostgreSQL ${m.postgres}, server on ${m.serverAllocator ?? 'glibc'}; ${results.durationSec} s`,
    '',
    ...(results.latency.length > 0 ? [latencyTable(results.latency), '', cpuTable(results.latency), '', breakdownTable(results.breakdown), ''] : []),
    ...(results.wake && results.wake.length > 0 ? [wakeTable(results.wake), ''] : []),
    ...(results.large.length > 0 ? [largeTable(results.large), ''] : []),
    ...(results.memory ? [memoryTable(results.memory), ''] : []),
    targetsTable(results.targets),
    '',
    `written: ${written.map((f) => `bench/results/${f}`).join(', ')}`,
  ];
  process.stdout.write(out.join('\n') + '\n');
  progress('done');
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
