/**
 * Gives memory back once the server has gone quiet.
 *
 * V8 collects garbage only when JavaScript allocates. After a burst of large
 * results, the socket buffers that carried them are garbage, but an idle
 * server allocates nothing, so they would stay resident until the next burst
 * (measured: 10–50 MB with 200 jobs × 10 MB read). Once nothing has happened
 * for `quietMs` — no job launched or ended, no worker connection opened or
 * closed — one full collection frees them and lets V8 shrink its heap. It runs
 * once per quiet period, so a steady load is never interrupted by it.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

let collector: (() => void) | undefined;

/**
 * A full collection: dead ArrayBuffers' backing stores are freed (on a
 * helper thread, within milliseconds) and V8 shrinks its heap. Node exposes
 * `gc` only with `--expose-gc`; setting the flag at run time makes it
 * available in new contexts, from which it is taken once. Called without
 * options on purpose: on Node 20 `gc({ type: 'major', execution: 'sync' })`
 * left 31 MB of dead buffers allocated where `gc()` freed them (measured).
 */
export function fullCollection(): () => void {
  if (!collector) {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    collector = () => gc();
  }
  return collector;
}

export interface MemoryReleaseOptions {
  /** How long nothing may happen before memory is released. */
  quietMs: number;
  /** Changes whenever something happens (jobs, worker connections). */
  activity: () => string;
  release: () => void;
  /** Told after each release, with how long it took. */
  released?: (ms: number) => void;
}

export class MemoryRelease {
  #last: string;
  #quietSince = Date.now();
  /** Something happened since the last release. */
  #dirty = false;
  #releases = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(private readonly options: MemoryReleaseOptions) {
    this.#last = options.activity();
    // Checking at a fraction of the quiet time bounds the delay to 1.25 × quietMs.
    this.#timer = setInterval(() => this.#check(), Math.max(50, options.quietMs / 4));
    this.#timer.unref();
  }

  /** Releases done so far. */
  get releases(): number {
    return this.#releases;
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #check(): void {
    const now = Date.now();
    const activity = this.options.activity();
    if (activity !== this.#last) {
      this.#last = activity;
      this.#quietSince = now;
      this.#dirty = true;
      return;
    }
    if (!this.#dirty || now - this.#quietSince < this.options.quietMs) return;
    this.#dirty = false;
    const t0 = performance.now();
    this.options.release();
    this.#releases++;
    this.options.released?.(performance.now() - t0);
  }
}
