/** Defaults and bounds of the pg_background settings, and their validation. */
import { errors, PgbgError, SqlState } from '../protocol/errors.js';

export const MAX_WORKERS = { default: 16, min: 1, max: 1000 } as const;
// 64 bytes: the C extension's smallest queue (shm_mq_minimum_size); a row larger than the queue still gets through.
export const QUEUE_SIZE = { default: 64 * 1024, min: 64, max: 256 * 1024 * 1024 } as const;
export const WORKER_TIMEOUT = { default: 0, min: 0, max: 2147483647 } as const;
export const CANCEL_GRACE_MS = { min: 0, max: 3_600_000 } as const;
export const WAIT_TIMEOUT_MS = { min: 0, max: 86_400_000 } as const;
/** pg_background 2.0's longest label. */
export const LABEL_BYTES = 64;

export function clamp(value: number, bounds: { min: number; max: number }): number {
  return Math.min(bounds.max, Math.max(bounds.min, Math.trunc(value)));
}

/** Resolves a requested queue size (0 = the session default) and checks its bounds. */
export function resolveQueueSize(requested: number | undefined, sessionDefault: number): number {
  const size = requested === undefined || requested === 0 ? sessionDefault : requested;
  if (!Number.isFinite(size) || size < QUEUE_SIZE.min) throw errors.queueTooSmall(QUEUE_SIZE.min);
  if (size > QUEUE_SIZE.max) throw errors.queueTooLarge(QUEUE_SIZE.max);
  return Math.trunc(size);
}

const MEMORY_UNITS: Record<string, number> = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
const TIME_UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };

function parseWithUnits(text: string, units: Record<string, number>, bareUnit: number, name: string): number {
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const factor = m ? (m[2] ? units[m[2]] : bareUnit) : undefined;
  if (!m || factor === undefined) {
    throw new PgbgError(SqlState.invalidParameterValue, `invalid value for parameter "${name}": "${text}"`, {
      hint: `Valid units for this parameter are ${Object.keys(units).map((u) => `"${u}"`).join(', ')}.`,
    });
  }
  return Math.round(Number(m[1]) * factor);
}

/** A memory setting as PostgreSQL writes it ('64kB', '1MB', or bare kB) in bytes. */
export function parseMemorySetting(text: string, name: string): number {
  return parseWithUnits(text, MEMORY_UNITS, 1024, name);
}

/** A time setting as PostgreSQL writes it ('5s', '100', '1min') in milliseconds. */
export function parseTimeSetting(text: string, name: string): number {
  return parseWithUnits(text, TIME_UNITS, 1, name);
}
