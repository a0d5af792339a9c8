/**
 * Handle cookies: positive 63-bit integers, unpredictable, never repeated.
 *
 * A plain random draw is unpredictable but may repeat; a counter never repeats
 * but is predictable. We encrypt a counter with a keyed pseudo-random
 * permutation (a 4-round Feistel network over 64 bits, HMAC-SHA-256 as the
 * round function, key from the CSPRNG) and cycle-walk until the value is a
 * positive 63-bit integer. Distinct counters give distinct cookies, so within
 * one engine a (pid, cookie) pair can never be issued twice; without the key
 * the sequence is indistinguishable from random draws.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const MASK32 = 0xffffffffn;
const MAX_COOKIE = (1n << 63n) - 1n;

export class CookieIssuer {
  readonly #key = randomBytes(32);
  #counter = 0n;

  next(): bigint {
    this.#counter += 1n;
    let value = this.#counter;
    // Cycle-walking keeps this a permutation of the valid range; ~2 rounds expected.
    do {
      value = this.#permute(value);
    } while (value === 0n || value > MAX_COOKIE);
    return value;
  }

  #permute(block: bigint): bigint {
    let left = (block >> 32n) & MASK32;
    let right = block & MASK32;
    for (let round = 0; round < 4; round++) {
      const f = this.#round(round, right);
      [left, right] = [right, left ^ f];
    }
    return (left << 32n) | right;
  }

  #round(round: number, half: bigint): bigint {
    const input = Buffer.alloc(5);
    input.writeUInt8(round, 0);
    input.writeUInt32BE(Number(half), 1);
    return BigInt(createHmac('sha256', this.#key).update(input).digest().readUInt32BE(0));
  }
}

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
