/**
 * The server's memory over the run: RSS from /proc every so many calls, the
 * heap after each full collection (the server runs with --trace-gc), and two
 * quiet readings — after the warm-up and at the end, each once no job runs,
 * the idle workers closed and the server collected garbage on going quiet —
 * which are comparable with each other whatever the load was doing.
 */
import type { SoakServer } from './server.js';

export interface Sample {
  jobs: number;
  rssMb: number;
}

export interface QuietReading {
  rssMb: number;
  /** Heap used after the quiet full collection, MB (undefined: none came in time). */
  heapMb: number | undefined;
}

export class MemoryLog {
  readonly samples: Sample[] = [];
  /** Heap after each full collection, with the jobs launched by then. */
  readonly heap: Sample[] = [];
  #gcSeen = 0;
  startMb = 0;
  warm: QuietReading | undefined;
  end: QuietReading | undefined;
  /** Jobs launched at the warm-up checkpoint. */
  warmJobs = 0;

  constructor(private readonly server: SoakServer) {}

  async sample(jobs: number): Promise<void> {
    if (!this.server.alive()) return;
    this.samples.push({ jobs, rssMb: await this.server.rssMb() });
    for (; this.#gcSeen < this.server.gc.length; this.#gcSeen++) {
      const e = this.server.gc[this.#gcSeen]!;
      if (e.kind.startsWith('Mark-Compact')) this.heap.push({ jobs, rssMb: e.afterMb });
    }
  }

  /**
   * Waits (up to `ms`) for the full collection the server runs once quiet, after `since`
   * (performance.now()), then for the allocator to hand freed pages back; reads RSS and that heap.
   */
  async quiet(since: number, ms: number): Promise<QuietReading> {
    let heapMb: number | undefined;
    for (let i = 0; i < Math.ceil(ms / 100) && heapMb === undefined; i++) {
      const e = this.server.gc.findLast((g) => g.at > since && g.kind.startsWith('Mark-Compact'));
      if (e) heapMb = e.afterMb;
      else await new Promise((r) => setTimeout(r, 100));
    }
    // jemalloc's background thread returns dirty pages after about a second (bin/pgbg's MALLOC_CONF).
    await new Promise((r) => setTimeout(r, 1200));
    return { rssMb: await this.server.rssMb(), heapMb };
  }

  /** Least-squares slope of RSS over the samples after the warm-up, in MB per 1,000 jobs (undefined: too few samples). */
  rssSlope(): number | undefined {
    return slopePer1000(this.samples.filter((s) => s.jobs >= this.warmJobs));
  }

  heapSlope(): number | undefined {
    return slopePer1000(this.heap.filter((s) => s.jobs >= this.warmJobs));
  }

  maxRss(): number {
    return Math.max(this.startMb, ...this.samples.map((s) => s.rssMb));
  }
}

export function slopePer1000(points: readonly Sample[]): number | undefined {
  if (points.length < 3) return undefined;
  const n = points.length;
  const mx = points.reduce((s, p) => s + p.jobs, 0) / n;
  const my = points.reduce((s, p) => s + p.rssMb, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (const p of points) {
    sxx += (p.jobs - mx) ** 2;
    sxy += (p.jobs - mx) * (p.rssMb - my);
  }
  return sxx === 0 ? undefined : (sxy / sxx) * 1000;
}
