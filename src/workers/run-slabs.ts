/**
 * Where a large result's row runs are copied to: slabs of 64 kB, filled in
 * order, instead of one allocation per run.
 *
 * Runs are 0–64 kB each. Allocated one by one they come from the C heap, and
 * after a burst of large results the heap keeps the holes between whatever is
 * still alive: its RSS stayed ~50 MB over its start in the bench, returned only
 * from its top. A slab is one allocation of 64 kB, which glibc maps on its own
 * (the `pgbg` command sets the threshold to 64 kB), and a slab goes back to the
 * system as soon as the last run in it is collected.
 *
 * A run keeps its slab alive: a job whose queue holds 64 kB of runs pins at
 * most that plus one partly used slab, so only results that have streamed
 * 64 kB use slabs (see RowRelay); small results, which may wait unread for
 * long, are copied exactly as before.
 */
export const SLAB_BYTES = 64 * 1024;

export class RunSlabs {
  #slab: Buffer | undefined;
  #used = 0;

  /** A copy of `bytes` in the current slab (a new one when it does not fit). */
  copy(bytes: Uint8Array): Buffer {
    if (bytes.length > SLAB_BYTES) return Buffer.from(bytes);
    if (this.#slab === undefined || this.#used + bytes.length > SLAB_BYTES) {
      this.#slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.#used = 0;
    }
    const run = this.#slab.subarray(this.#used, this.#used + bytes.length);
    run.set(bytes);
    this.#used += bytes.length;
    return run;
  }

  /** Lets go of the current slab (its runs keep it as long as they live). */
  release(): void {
    this.#slab = undefined;
    this.#used = 0;
  }
}
