/**
 * Handle cookies: positive 63-bit integers, unpredictable, never repeated.
 *
 * A plain random draw is unpredictable but may repeat; a counter never repeats
 * but is predictable. We encrypt a counter with a keyed pseudo-random
 * permutation (a 4-round Feistel network over 64 bits, AES-256 as the round
 * function, key from the CSPRNG) and cycle-walk until the value is a
 * positive 63-bit integer. Distinct counters give distinct cookies, so within
 * one engine a (pid, cookie) pair can never be issued twice; without the key
 * the sequence is indistinguishable from random draws.
 */
import { createCipheriv, randomBytes, timingSafeEqual, type Cipher } from 'node:crypto';

const MAX_COOKIE = (1n << 63n) - 1n;

export class CookieIssuer {
  // One block cipher object for the engine's life: ECB encrypts each 16-byte
  // block on its own, so update() is a pure keyed function of each block.
  // Cookies are made in batches, one update() per Feistel round for the whole
  // batch: a round per call (HMAC or AES) cost ~10 µs per cookie, a batch ~1.
  readonly #cipher: Cipher = createCipheriv('aes-256-ecb', randomBytes(32), null).setAutoPadding(false);
  #counter = 0;
  #ready: bigint[] = [];

  next(): bigint {
    if (this.#ready.length === 0) this.#ready = this.#batch(BATCH);
    return this.#ready.pop()!;
  }

  /** Cookies for the next `n` counters (in reverse order, so pop() keeps counter order). */
  #batch(n: number): bigint[] {
    const left = new Uint32Array(n);
    const right = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      this.#counter++;
      // Counters stay far below 2^53, so plain numbers carry them exactly.
      left[i] = Math.floor(this.#counter / 2 ** 32);
      right[i] = this.#counter >>> 0;
    }
    // Cycle-walking: a value outside 1..2^63-1 is permuted again. It ends, since the
    // start (a valid counter) lies on the same cycle; ~1 extra pass for half of them.
    let todo = Array.from({ length: n }, (_, i) => i);
    while (todo.length > 0) {
      this.#permute(left, right, todo);
      todo = todo.filter((i) => left[i]! >= 2 ** 31 || (left[i] === 0 && right[i] === 0));
    }
    const out: bigint[] = new Array<bigint>(n);
    for (let i = 0; i < n; i++) out[n - 1 - i] = (BigInt(left[i]!) << 32n) | BigInt(right[i]!);
    return out;
  }

  /** Four Feistel rounds over the 64-bit values (left, right) at `indexes`. */
  #permute(left: Uint32Array, right: Uint32Array, indexes: number[]): void {
    const blocks = Buffer.alloc(16 * indexes.length);
    for (let round = 0; round < 4; round++) {
      indexes.forEach((i, k) => {
        blocks.writeUInt8(round, 16 * k);
        blocks.writeUInt32BE(right[i]!, 16 * k + 1);
      });
      const f = this.#cipher.update(blocks);
      indexes.forEach((i, k) => {
        const l = left[i]!;
        left[i] = right[i]!;
        right[i] = (l ^ f.readUInt32BE(16 * k)) >>> 0;
      });
    }
  }
}

const BATCH = 256;

function toBytes(value: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt.asUintN(64, value));
  return b;
}

/** Constant-time comparison, so timing does not reveal how much of a guessed cookie was right. */
export function cookiesEqual(a: bigint, b: bigint): boolean {
  return timingSafeEqual(toBytes(a), toBytes(b));
}

/** Parses a cookie given as bigint, number or decimal string; undefined when it is not a valid int8. */
export function parseCookie(value: bigint | number | string): bigint | undefined {
  try {
    const v = typeof value === 'bigint' ? value : BigInt(value);
    return v >= -(1n << 63n) && v <= MAX_COOKIE ? v : undefined;
  } catch {
    return undefined;
  }
}
