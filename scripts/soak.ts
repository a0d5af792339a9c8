/**
 * `npm run soak -- --seed S --jobs N [--sessions N] [--roles N] …`: a seeded
 * soak of pgbg serve --embedded (scripts/soak/run.ts says what it does and
 * checks). Prints what it covered — a `coverage:` line, then `soak: PASS` or
 * `soak: FAIL` with each violated invariant, naming the seed and the job —
 * writes a JSON summary (default .tmp/soak/last.json) and exits 1 on any
 * violation. 300 jobs take well under a minute; the documented long run is
 * `npm run soak -- --seed 1 --jobs 100000` (an hour or two on 2 cores).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseOptions, UsageRequested, USAGE, type SoakOptions } from './soak/options.js';
import { runSoak, stopOnExit, type SoakSummary } from './soak/run.js';

const root = path.resolve(import.meta.dirname, '..');

function fmt(n: number | undefined, digits = 1): string {
  return n === undefined || !Number.isFinite(n) ? '?' : n.toFixed(digits);
}

function counts(m: Record<string, number>): string {
  return Object.entries(m).map(([k, v]) => `${k}=${v}`).join(' ') || 'none';
}

export function report(s: SoakSummary): string[] {
  const ops = Object.values(s.ops).reduce((a, b) => a + b, 0);
  const stale = Object.values(s.staleHandleChecks).reduce((a, b) => a + b, 0);
  const f = s.fates;
  const lines = [
    `coverage: seed=${s.seed} jobs=${s.jobs.sql} library-jobs=${s.jobs.library} sessions=${s.options.sessions} roles=${s.options.roles} ops=${ops} ` +
      `stale-handle-checks=${stale} race-rounds=${s.raceRounds} race-patterns=${Object.keys(s.racePatterns).length} ` +
      `rss-start=${fmt(s.rss.startMb)}MB rss-end=${fmt(s.rss.end?.rssMb)}MB rss-slope=${fmt(s.rss.slopeMbPer1000Jobs, 2)}MB/1000jobs duration=${fmt(s.durationS)}s`,
    `  ops by kind: ${counts(s.ops)}`,
    `  errors by SQLSTATE: ${counts(s.errorsBySqlstate)}`,
    `  stale handles (SQLSTATE got): ${counts(s.staleHandleChecks)}`,
    `  races (${s.raceRounds} rounds): ${counts(s.racePatterns)}`,
    f ? `  fates: committed=${f.committed} rolled-back=${f.rolledBack} (canceled ${f.canceled}, failed ${f.failed}); canceled after their commit=${f.cancelAfterCommit} (of them begun only after the cancel was delivered: ${f.lostCancels}); run/run_query overruns=${f.timedOut}; journal rows=${f.journalRows}` : '  fates: not checked',
    `  server RSS MB: start ${fmt(s.rss.startMb)}, quiet after warm-up ${fmt(s.rss.warm?.rssMb)}, quiet at end ${fmt(s.rss.end?.rssMb)}, max ${fmt(s.rss.maxMb)}; ` +
      `slope after warm-up ${fmt(s.rss.slopeMbPer1000Jobs, 2)} MB/1000 jobs over ${s.rss.samples} samples (${s.rss.enforced ? `limit ${s.options.rssSlopeLimit}` : `reported only: limit enforced from ${s.options.rssEnforceFrom} jobs after warm-up`})`,
    `  server heap MB after full GC: quiet after warm-up ${fmt(s.rss.warm?.heapMb)}, quiet at end ${fmt(s.rss.end?.heapMb)} ` +
      `(growth ${fmt(s.heap.quietGrowthMb)}, ${s.rss.enforced ? `limit ${s.heap.limitMb}` : 'reported only'}); slope ${fmt(s.heap.slopeMbPer1000Jobs, 2)} MB/1000 jobs over ${s.heap.fullCollections} full collections`,
    `  worker backends: idle level ${s.workers.baseline}, peak ${s.workers.peak}, after the run ${s.workers.afterRun ?? '?'} (${s.workers.returned ? 'returned' : 'NOT returned'})`,
  ];
  for (const [name, issue] of Object.entries(s.knownIssues)) {
    lines.push(`  known issue ${name} (tolerated): ${issue.count} time(s); e.g. ${issue.examples[0] ?? ''}`);
  }
  if (s.pass) lines.push(`soak: PASS seed=${s.seed} jobs=${s.jobs.sql} in ${fmt(s.durationS)} s`);
  else lines.push(`soak: FAIL seed=${s.seed}: ${s.violations.length} violation(s)`, ...s.violations.map((v) => `  ✗ ${v}`));
  return lines;
}

async function main(): Promise<number> {
  let options: SoakOptions;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${err instanceof UsageRequested ? '' : `${(err as Error).message}\n`}${USAGE}\n`);
    return err instanceof UsageRequested ? 0 : 2;
  }
  const log = (line: string) => {
    if (!options.quiet) process.stdout.write(`${line}\n`);
  };
  // Told to stop, or past the deadline (and the stop's own time): the server is stopped and its data removed, then the process ends.
  const end = (code: number, message: string) => {
    process.stdout.write(`soak: FAIL seed=${options.seed}: ${message}\n`);
    // Connections break as the server stops: nothing may keep the stop from finishing.
    process.on('uncaughtException', (err) => process.stderr.write(`while stopping: ${err.message}\n`));
    process.on('unhandledRejection', (err) => process.stderr.write(`while stopping: ${(err as Error).message}\n`));
    void Promise.race([Promise.all([...stopOnExit].map((stop) => stop().catch(() => undefined))), new Promise((r) => setTimeout(r, 45_000))])
      .finally(() => process.exit(code));
  };
  process.once('SIGINT', () => end(130, 'interrupted (SIGINT)'));
  process.once('SIGTERM', () => end(143, 'terminated (SIGTERM)'));
  const hard = setTimeout(() => end(1, `the run did not end within its deadline (${options.deadlineMs / 1000} s) and 120 s more`), options.deadlineMs + 120_000);
  try {
    const summary = await runSoak(options, root, log);
    const out = path.resolve(root, options.out);
    await mkdir(path.dirname(out), { recursive: true });
    await writeFile(out, JSON.stringify(summary, null, 2) + '\n');
    for (const line of report(summary)) process.stdout.write(`${line}\n`);
    process.stdout.write(`  summary: ${path.relative(root, out)}\n`);
    return summary.pass ? 0 : 1;
  } catch (err) {
    process.stdout.write(`soak: FAIL seed=${options.seed}: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  } finally {
    clearTimeout(hard);
  }
}

process.exitCode = await main();
