/** The stdout tables and the target checks. */
import type { BenchResults, LargeFigure, LatencyFigure, TargetCheck } from './results.js';
import type { Spread } from './stats.js';
import type { MemoryResult } from './memory.js';
import type { ProbeFigure } from './breakdown.js';
import type { WakeFigure } from './wake.js';
import { CPU_CLASSES } from './cpu.js';

const MB = 1024 * 1024;

function fmt(x: number, digits?: number): string {
  if (!Number.isFinite(x)) return '–';
  const d = digits ?? (Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2);
  return x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
}

function withSpread(s: Spread, digits?: number): string {
  return s.reps.length > 1 ? `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})` : fmt(s.median, digits);
}

function ratio(a: number, b: number | undefined): string {
  if (b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '–';
  const r = a / b;
  return `${r >= 10 ? fmt(r, 0) : r >= 1 ? fmt(r, 1) : fmt(r, 2)}×`;
}

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
}

const KIND_LABEL = { insert: "INSERT INTO log(msg) VALUES ('x')", select1: 'SELECT 1' } as const;

export function latencyTable(figures: LatencyFigure[]): string {
  const widths = [42, 20, 20, 24, 8, 8, 8, 8, 8, 8];
  const out: string[] = [];
  const groups = new Map<string, LatencyFigure[]>();
  for (const f of figures) {
    const key = `${f.kind}\u0000${f.callers}`;
    groups.set(key, [...(groups.get(key) ?? []), f]);
  }
  out.push(row(['path', 'p50 ms', 'p99 ms', 'jobs/s', 'p50', 'jobs/s', 'p50', 'jobs/s', 'jobs/s', 'pgbg'], widths));
  out.push(row(['', '', '', '', '×floor', '×floor', '×persist', '×persist', '×1-shot', 'CPU ms'], widths));
  for (const [, group] of groups) {
    const first = group[0]!;
    const floor = group.find((f) => f.path === 'floor');
    const dblink = group.find((f) => f.path === 'dblink');
    const persistent = group.find((f) => f.path === 'dblink-persistent');
    out.push(`${KIND_LABEL[first.kind]} — ${first.callers} caller${first.callers > 1 ? 's' : ''} (median of ${first.p50Ms.reps.length}, min–max)`);
    for (const f of group) {
      out.push(
        row(
          [
            `  ${f.label}`,
            withSpread(f.p50Ms),
            withSpread(f.p99Ms),
            withSpread(f.jobsPerSec, 0),
            f.path === 'floor' ? '1×' : ratio(f.p50Ms.median, floor?.p50Ms.median),
            f.path === 'floor' ? '1×' : f.shareOfFloor ? ratio(f.shareOfFloor.median, 1) : ratio(f.jobsPerSec.median, floor?.jobsPerSec.median),
            f.path === 'dblink-persistent' ? '1×' : ratio(f.p50Ms.median, persistent?.p50Ms.median),
            f.path === 'dblink-persistent' ? '1×' : ratio(f.jobsPerSec.median, persistent?.jobsPerSec.median),
            f.path === 'dblink' ? '1×' : ratio(f.jobsPerSec.median, dblink?.jobsPerSec.median),
            // Only the SQL API paths go through the pgbg server; elsewhere its CPU is background noise.
            f.path.startsWith('sqlapi') ? fmt(f.serverCpuMsPerJob.median) : '',
          ],
          widths,
        ),
      );
    }
  }
  out.push('  (jobs/s ×floor: median over repetitions of the path\'s jobs/s over the floor\'s in the same repetition;');
  out.push('   ×persist: against dblink on a persistent connection, ×1-shot: against dblink connecting per call;');
  out.push('   pgbg CPU ms: CPU time of the pgbg server process per job, median over repetitions)');
  return out.join('\n');
}

/** Where the CPU of one job goes, by process, for the INSERT job at the most callers measured. */
export function cpuTable(figures: LatencyFigure[]): string {
  const callers = Math.max(...figures.map((f) => f.callers));
  const group = figures.filter((f) => f.kind === 'insert' && f.callers === callers && f.cpuMsPerJob);
  const widths = [42, ...CPU_CLASSES.map(() => 9), 9, 8];
  const total = (f: LatencyFigure) => CPU_CLASSES.reduce((sum, c) => sum + f.cpuMsPerJob[c].median, 0);
  const floor = group.find((f) => f.path === 'floor');
  return [
    `CPU ms per job by process: ${KIND_LABEL.insert}, ${callers} callers (medians)`,
    row(['path', ...CPU_CLASSES, 'total', '×floor'], widths),
    ...group.map((f) => row([`  ${f.label}`, ...CPU_CLASSES.map((c) => fmt(f.cpuMsPerJob[c].median, 3)), fmt(total(f), 3), floor ? ratio(total(f), total(floor)) : '–'], widths)),
    '  (bench: the client process, incl. the library engine; callers: the backends the clients talk to; server: pgbg serve;',
    '   workers: its worker backends; journal: its journal and control backends; postgres: WAL writer, checkpointer and the like)',
  ].join('\n');
}

export function breakdownTable(probes: ProbeFigure[]): string {
  const widths = [62, 9, 9];
  return [
    row(['Where a SQL API launch goes (1 caller, one run)', 'p50 ms', 'p99 ms'], widths),
    ...probes.map((p) =>
      p.p50Ms === null || p.p99Ms === null ? `  ${p.label}: not measured (${p.error ?? 'error'})` : row([`  ${p.label}`, fmt(p.p50Ms), fmt(p.p99Ms)], widths),
    ),
  ].join('\n');
}

export function wakeTable(figures: WakeFigure[]): string {
  const widths = [62, 9, 9, 9];
  return [
    row(['Wake-up after a job ends (2.0 polls every 50–800 ms)', 'p50 ms', 'p99 ms', 'max ms'], widths),
    ...figures.map((f) =>
      row([`  ${f.call}${f.call === 'wait_any' ? ` over ${f.jobs} running jobs` : ''} (${f.waits} waits${f.endedBeforeWait ? `, ${f.endedBeforeWait} left out` : ''})`, fmt(f.p50Ms), fmt(f.p99Ms), fmt(f.maxMs)], widths)),
  ].join('\n');
}

/** The dblink variant a large-result variant is compared with: same way of reading. */
function dblinkPeer(variant: string): string {
  return variant.endsWith('count') ? 'dblink-count' : 'dblink-read';
}

export function largeTable(figures: LargeFigure[]): string {
  const widths = [48, 22, 10, 10];
  const out: string[] = [];
  const first = figures[0];
  if (!first) return '';
  const floor = figures.find((f) => f.variant === 'direct-read');
  out.push(`${fmt(first.rows, 0)} rows of (int, md5 text), read to the end (median of ${first.seconds.reps.length}, min–max)`);
  out.push(row(['path', 'seconds', '×direct', '×dblink'], widths));
  for (const f of figures) {
    const peer = figures.find((p) => p.variant === dblinkPeer(f.variant));
    out.push(
      row(
        [
          `  ${f.label}`,
          withSpread(f.seconds, 2),
          ratio(f.seconds.median, floor?.seconds.median),
          f.variant.startsWith('dblink') || f.variant.startsWith('direct') ? '' : ratio(f.seconds.median, peer?.seconds.median),
        ],
        widths,
      ),
    );
  }
  out.push('  (×direct: against the direct query read by the client; ×dblink: against dblink read the same way)');
  const measured = figures.filter((f) => f.cpuSeconds);
  if (measured.length > 0) {
    const columns = [...CPU_CLASSES, 'machine'] as const;
    const cpuWidths = [48, ...columns.map(() => 9)];
    out.push('', 'CPU seconds per run by process (medians)');
    out.push(row(['path', ...columns], cpuWidths));
    for (const f of measured) out.push(row([`  ${f.label}`, ...columns.map((c) => fmt(f.cpuSeconds![c].median, 2))], cpuWidths));
    out.push('  (as in the CPU table above; machine: all cores busy, every process, including a one-shot dblink\'s backend,');
    out.push('   which ends before it can be counted by process; the callers column then holds only the caller\'s side)');
  }
  return out.join('\n');
}

export function memoryTable(m: MemoryResult): string {
  const mb = (b: number) => `${fmt(b / MB, 1)} MB`;
  /** A difference with its sign, e.g. +1.0 MB or −1.0 MB. */
  const signedMb = (b: number) => `${b < 0 ? '−' : '+'}${mb(Math.abs(b))}`;
  const widths = [74, 12, 14];
  return [
    `pgbg server RSS: ${m.jobs} jobs × ${fmt(m.bytesPerJob / MB, 1)} MB result, ${m.queueBytes / 1024} kB queues`,
    row(['', 'RSS', 'vs baseline'], widths),
    row(['  at ready (fresh server)', mb(m.rssAtReady), ''], widths),
    row(['  baseline (before this phase)', mb(m.baseline), ''], widths),
    row([`  peak while unread (${m.workersBlockedOnWrite} workers blocked on ClientWrite)`, mb(m.peakUnread), signedMb(m.peakUnread - m.baseline)], widths),
    row(['  peak while reading', mb(m.peakReading), signedMb(m.peakReading - m.baseline)], widths),
    row(['  after all jobs ended (+ settle)', mb(m.after), signedMb(m.after - m.baseline)], widths),
    ...m.rounds.slice(1).map((r, i) =>
      row([`  round ${i + 2}: peak unread ${mb(r.peakUnread)}, peak reading ${mb(r.peakReading)}, after`, mb(r.after), signedMb(r.after - m.baseline)], widths),
    ),
    row(['  bound: sum of queue sizes', mb(m.queueBound), ''], widths),
    `  launch of all jobs ${fmt(m.launchMs / 1000, 2)} s; reading them ${fmt(m.readMs / 1000, 1)} s (${fmt((m.jobs * m.bytesPerJob) / MB / (m.readMs / 1000), 0)} MB/s)`,
  ].join('\n');
}

/** Memory growth allowed over the queues: per-connection socket and parser buffers, heap slack. */
export const MEMORY_FIXED_OVERHEAD = 32 * MB;

export function checkTargets(r: Pick<BenchResults, 'latency' | 'large' | 'memory'>): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const lat = (path: string, kind: string, callers: number) => r.latency.find((f) => f.path === path && f.kind === kind && f.callers === callers);
  for (const kind of ['select1', 'insert'] as const) {
    const l = lat('sqlapi-launch', kind, 1);
    if (l) checks.push({ name: `SQL API launch latency p50 (${kind}, 1 caller)`, target: '≤ 1 ms', measured: `${fmt(l.p50Ms.median)} ms`, met: l.p50Ms.median <= 1 });
  }
  // Against the peer for autonomous calls: dblink on a persistent connection (same run).
  const persistent1 = lat('dblink-persistent', 'insert', 1);
  const persistent4 = lat('dblink-persistent', 'insert', 4);
  for (const path of ['sqlapi-result', 'sqlapi-run']) {
    const one = lat(path, 'insert', 1);
    if (one && persistent1) {
      const x = one.p50Ms.median / persistent1.p50Ms.median;
      checks.push({ name: `INSERT latency p50, ${one.label}, 1 caller`, target: '≤ 1.5× persistent dblink', measured: `${fmt(one.p50Ms.median)} ms = ${fmt(x)}× ${fmt(persistent1.p50Ms.median)} ms`, met: x <= 1.5 });
    }
    const four = lat(path, 'insert', 4);
    if (four && persistent4) {
      const share = four.jobsPerSec.median / persistent4.jobsPerSec.median;
      checks.push({ name: `INSERT throughput, ${four.label}, 4 callers`, target: '≥ 50% of persistent dblink', measured: `${fmt(four.jobsPerSec.median, 0)}/s = ${fmt(share * 100, 0)}% of ${fmt(persistent4.jobsPerSec.median, 0)}/s`, met: share >= 0.5 });
    }
  }
  const launch1 = lat('sqlapi-launch', 'insert', 1);
  if (launch1 && persistent1) {
    const x = launch1.p50Ms.median / persistent1.p50Ms.median;
    checks.push({ name: `INSERT latency p50, ${launch1.label}, 1 caller`, target: '≤ persistent dblink', measured: `${fmt(launch1.p50Ms.median)} ms = ${fmt(x)}× ${fmt(persistent1.p50Ms.median)} ms`, met: x <= 1 });
  }
  const floor = lat('floor', 'insert', 4);
  for (const path of ['sqlapi-result', 'sqlapi-launch', 'sqlapi-submit']) {
    const f = lat(path, 'insert', 4);
    if (!f || !floor) continue;
    // The paired share (each repetition against the floor's batch of that repetition) when there is one.
    const share = f.shareOfFloor?.median ?? f.jobsPerSec.median / floor.jobsPerSec.median;
    const range = f.shareOfFloor ? ` (reps ${fmt(f.shareOfFloor.min * 100, 0)}–${fmt(f.shareOfFloor.max * 100, 0)}%)` : '';
    checks.push({
      name: `INSERT throughput, ${f.label}, 4 callers`,
      target: '≥ 50% of the floor',
      measured: `${fmt(f.jobsPerSec.median, 0)}/s, ${fmt(share * 100, 0)}% of the floor${range}`,
      met: share >= 0.5,
    });
  }
  const large = (v: string) => r.large.find((f) => f.variant === v);
  for (const [mine, peer] of [['sqlapi-count', 'dblink-count'], ['sqlapi-read', 'dblink-read']] as const) {
    const a = large(mine);
    const b = large(peer);
    if (!a || !b) continue;
    const x = a.seconds.median / b.seconds.median;
    checks.push({ name: `${fmt(a.rows, 0)} rows, ${a.label}`, target: '≤ 1.2× dblink', measured: `${fmt(a.seconds.median)} s = ${fmt(x)}× ${fmt(b.seconds.median)} s`, met: x <= 1.2 });
  }
  const m = r.memory;
  if (m) {
    const growth = m.peakUnread - m.baseline;
    checks.push({
      name: 'RSS growth while unread',
      target: `≤ queues ${fmt(m.queueBound / MB, 1)} MB + ${MEMORY_FIXED_OVERHEAD / MB} MB`,
      measured: `${fmt(growth / MB, 1)} MB`,
      met: growth <= m.queueBound + MEMORY_FIXED_OVERHEAD,
    });
    checks.push({
      name: 'RSS after the jobs ended',
      target: '≤ baseline + 10%',
      measured: `${fmt(m.after / MB, 1)} MB vs ${fmt(m.baseline / MB, 1)} MB`,
      met: m.after <= m.baseline * 1.1,
    });
    const last = m.rounds[m.rounds.length - 1];
    if (last && m.rounds.length > 1) {
      // Against round 1 or the baseline, whichever is higher: a round that ended below the
      // baseline (the allocator gave back more than it held before) is not growth when the next ends at it.
      const reference = Math.max(m.after, m.baseline);
      checks.push({
        name: `RSS after round ${m.rounds.length} vs after round 1 (no growth per round)`,
        target: '≤ max(round 1, baseline) + 5%',
        measured: `${fmt(last.after / MB, 1)} MB vs ${fmt(reference / MB, 1)} MB`,
        met: last.after <= reference * 1.05,
      });
    }
  }
  return checks;
}

export function targetsTable(checks: TargetCheck[]): string {
  const widths = [74, 24, 40, 4];
  return [row(['target', 'wanted', 'measured', ''], widths), ...checks.map((c) => row([`  ${c.name}`, c.target, c.measured, c.met ? 'met' : 'MISS'], widths))].join('\n');
}
