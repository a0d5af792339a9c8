/** Small helpers shared by the benchmark modules. */

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** Rejects when `promise` has not settled within `ms`: no step of the benchmark may hang. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** True if `promise` settled within `ms` (its rejection counts as settled); never leaves a timer behind. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` until it returns true; throws after `timeoutMs`. */
export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string, everyMs = 5): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

export function nowMs(): number {
  return performance.now();
}

/** SQL string literal (standard_conforming_strings is on in every supported PostgreSQL). */
export function lit(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/**
 * A FROM item that launches a job (`launchArgs`: pg_background_launch's arguments)
 * and reads its result with the column list `columns`, in one statement: the
 * 2.0 form of 1.8's `pg_background_result(pg_background_launch(…))`.
 */
export function resultOfLaunch(launchArgs: string, columns: string): string {
  return `(SELECT pg_background_launch(${launchArgs}) AS h OFFSET 0) launched, pg_background_result((launched.h).pid, (launched.h).cookie) AS ${columns}`;
}
