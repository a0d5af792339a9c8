/** The shape of bench/results/*.json, shared by the runner, the table and the chart. */
import type { ProbeFigure } from './breakdown.js';
import type { CpuClass } from './cpu.js';
import type { MemoryResult } from './memory.js';
import type { JobKind } from './paths.js';
import type { Spread } from './stats.js';
import type { WakeFigure } from './wake.js';

export interface LatencyFigure {
  path: string;
  label: string;
  kind: JobKind;
  callers: number;
  jobsPerRep: number;
  p50Ms: Spread;
  p99Ms: Spread;
  jobsPerSec: Spread;
  /** CPU the pgbg server process spent per job, in ms (its CPU time over the batch / jobs). */
  serverCpuMsPerJob: Spread;
  /** CPU per job of each class of process (see bench/cpu.ts), in ms. */
  cpuMsPerJob: Record<CpuClass, Spread>;
  /** Jobs/s as a share of the floor's jobs/s in the same repetition (paired), per repetition. */
  shareOfFloor?: Spread;
}

export interface LargeFigure {
  variant: string;
  label: string;
  rows: number;
  seconds: Spread;
  /** CPU seconds per run of each class of process, and of the whole machine (absent in older results). */
  cpuSeconds?: Record<CpuClass | 'machine', Spread>;
}

export interface TargetCheck {
  name: string;
  target: string;
  measured: string;
  met: boolean;
}

export interface BenchResults {
  startedAt: string;
  mode: 'quick' | 'full';
  durationSec: number;
  machine: {
    cpus: number;
    cpuModel: string;
    totalMemMB: number;
    platform: string;
    node: string;
    postgres: string;
    /** The C allocator the pgbg server ran on (absent in older results). */
    serverAllocator?: 'jemalloc' | 'glibc';
  };
  config: Record<string, unknown>;
  latency: LatencyFigure[];
  /** Pieces of a SQL API launch, timed alone (1 caller). */
  breakdown: ProbeFigure[];
  large: LargeFigure[];
  /** How soon wait_any and wait return after a job ends (absent in older results). */
  wake?: WakeFigure[];
  memory: MemoryResult | undefined;
  targets: TargetCheck[];
}
