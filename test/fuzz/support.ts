/**
 * What the fuzz tests share: the seed and run counts (fixed unless the
 * environment says otherwise), a tally of outcomes that each test prints, and
 * a runner that executes a synchronous property in a worker thread so that a
 * timer can bound it (a hang there cannot block the timer here, and a crash
 * there does not take this process with it).
 *
 *   PGBG_FUZZ_SEED=<int>   the seed of every property (default FUZZ_SEED below)
 *   PGBG_FUZZ_RUNS=<int>   runs per property, instead of each one's default
 */
import { Worker } from 'node:worker_threads';

export const FUZZ_SEED = 0x5eed_9b;

function envInt(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a whole number (got ${raw})`);
  return n;
}

export const seed: number = envInt('PGBG_FUZZ_SEED') ?? FUZZ_SEED;

/** Runs for one property: PGBG_FUZZ_RUNS when set, else the property's own (small) default. */
export function runs(defaultRuns: number): number {
  return envInt('PGBG_FUZZ_RUNS') ?? defaultRuns;
}

export interface TallyJSON {
  name: string;
  inputs: number;
  minSize: number;
  maxSize: number;
  ms: number;
  counts: [string, number][];
}

/** Counts of what the inputs led to, and the sizes of the inputs, for the line each test prints. */
export class Tally {
  readonly counts = new Map<string, number>();
  inputs = 0;
  minSize = Infinity;
  maxSize = 0;
  /** From the first input to the last one's outcome. */
  #first: number | undefined;
  #last = 0;
  #ms = 0;

  constructor(readonly name: string) {}

  static from(json: TallyJSON): Tally {
    const t = new Tally(json.name);
    t.inputs = json.inputs;
    t.minSize = json.minSize;
    t.maxSize = json.maxSize;
    t.#ms = json.ms;
    for (const [k, v] of json.counts) t.counts.set(k, v);
    return t;
  }

  /** About to try an input (starts the clock). */
  start(): void {
    this.#first ??= performance.now();
  }

  /** One input of `size` (bytes or characters, as the test says) and what became of it, e.g. 'accepted' or 'refused 08P01'. */
  add(outcome: string, size: number): void {
    this.start();
    this.inputs++;
    this.minSize = Math.min(this.minSize, size);
    this.maxSize = Math.max(this.maxSize, size);
    this.counts.set(outcome, (this.counts.get(outcome) ?? 0) + 1);
    this.#last = performance.now();
  }

  get ms(): number {
    return this.#ms + (this.#first === undefined ? 0 : this.#last - this.#first);
  }

  toJSON(): TallyJSON {
    return { name: this.name, inputs: this.inputs, minSize: this.minSize, maxSize: this.maxSize, ms: this.ms, counts: [...this.counts] };
  }

  /** `# fuzz <name>: <runs> runs, seed <seed>, <n> inputs of <min>–<max> <unit>; outcome ×n, …; <ms> ms` */
  print(runCount: number, unit = 'bytes'): void {
    const outcomes = [...this.counts].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ×${v}`).join(', ');
    const sizes = this.inputs === 0 ? 'none' : `${this.minSize}–${this.maxSize} ${unit}`;
    process.stdout.write(`# fuzz ${this.name}: ${runCount} runs, seed ${seed}, ${this.inputs} inputs of ${sizes}; ${outcomes}; ${Math.round(this.ms)} ms\n`);
  }
}

/** What a worker started by runInWorker posts. */
export type WorkerMessage =
  | { kind: 'input'; label: string }
  | { kind: 'done'; tallies: Record<string, TallyJSON> };

/**
 * Runs `module` (a .ts file that reads workerData and posts WorkerMessages: an
 * 'input' before each input, 'done' at the end) in a worker thread. Fails if
 * one input takes longer than `inputDeadlineMs` — naming it — or if the worker
 * crashed.
 */
export function runInWorker(module: URL, data: unknown, inputDeadlineMs: number): Promise<Record<string, TallyJSON>> {
  // tsx's loader is per thread: the worker registers it before importing the TypeScript module.
  const bootstrap = `import('tsx/esm/api').then((api) => { api.register(); return import(${JSON.stringify(module.href)}); });`;
  // The main thread's stack (V8's default limit is just under 1 MB; a worker's is 4 MB): stack exhaustion comes as it would there.
  const worker = new Worker(bootstrap, { eval: true, workerData: data, resourceLimits: { stackSizeMb: 1 } });
  let current = '(loading)';
  let inputs = 0;
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      fn();
    };
    const arm = () => setTimeout(() => settle(() => reject(new Error(`fuzz worker: no answer within ${inputDeadlineMs} ms on input #${inputs}: ${current}`))), inputDeadlineMs);
    let timer = arm();
    worker.on('message', (m: WorkerMessage) => {
      if (m.kind === 'input') {
        current = m.label;
        inputs++;
        clearTimeout(timer);
        timer = arm();
      } else {
        settle(() => resolve(m.tallies));
      }
    });
    worker.on('error', (err) => settle(() => reject(new Error(`fuzz worker failed on input #${inputs} (${current}): ${err.stack ?? String(err)}`))));
    worker.on('exit', (code) => settle(() => reject(new Error(`fuzz worker exited (${code}) on input #${inputs}: ${current}`))));
  });
}

/** node:test's timeout for a fuzz test: the suite's default, or none for a longer run (PGBG_FUZZ_RUNS). */
export const fuzzTestTimeout: number | undefined = process.env.PGBG_FUZZ_RUNS ? Infinity : undefined;

/** A short printable description of an input, for failure messages. */
export function describeInput(value: string | Uint8Array, max = 160): string {
  const size = typeof value === 'string' ? `${value.length} chars` : `${value.byteLength} bytes`;
  const text = typeof value === 'string' ? JSON.stringify(value.slice(0, max)) : `<${Buffer.from(value.subarray(0, max / 2)).toString('hex')}>`;
  const cut = (typeof value === 'string' ? value.length : value.byteLength * 2) > max;
  return `${text.slice(0, max + 2)}${cut ? '…' : ''} (${size})`;
}

/**
 * Tells, on stderr, what this thread was doing when its event loop stopped
 * running for `silenceMs` (a server in this process looping forever on an
 * input): a thread of its own watches heartbeats that this thread's timer
 * sends. It cannot end the loop; node:test's per-file timeout ends the file.
 */
export class Watchdog {
  readonly #worker: Worker;
  readonly #timer: NodeJS.Timeout;
  #label = '(nothing yet)';

  constructor(silenceMs: number) {
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const { writeSync } = require('node:fs');
      let last = Date.now(), label = '', told = false;
      parentPort.on('message', (m) => { last = Date.now(); label = m; told = false; });
      setInterval(() => {
        if (!told && Date.now() - last > workerData) {
          told = true;
          writeSync(2, '\\n# fuzz watchdog: the event loop has not run for ' + workerData + ' ms; it was serving: ' + label + '\\n');
        }
      }, 500);`;
    this.#worker = new Worker(code, { eval: true, workerData: silenceMs });
    this.#worker.unref();
    this.#timer = setInterval(() => this.#worker.postMessage(this.#label), 250);
    this.#timer.unref();
  }

  /** What is being served now. */
  set current(label: string) {
    this.#label = label;
    this.#worker.postMessage(label);
  }

  stop(): Promise<number> {
    clearInterval(this.#timer);
    return this.#worker.terminate();
  }
}
