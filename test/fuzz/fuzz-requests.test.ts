/**
 * Fuzzing the SQL API's request decoder (parseRequest, zod) with fast-check:
 * any JSON value; request-shaped objects whose fields get wrong types, numbers
 * past a double or a safe integer, deep nesting, long strings with NUL and lone
 * surrogate escapes, and prototype keys (__proto__, constructor); any text,
 * invalid UTF-8 decoded as the endpoint decodes it. Run in a worker thread
 * (requests-fuzz.ts) under a per-input deadline.
 */
import { test } from 'node:test';
import { fuzzTestTimeout, runInWorker, runs, seed, Tally } from './support.js';
import type { RequestsFuzzData } from './requests-fuzz.js';

const INPUT_DEADLINE_MS = 30_000;

test('every text decodes to a request that decodes again to itself, or is refused with a SQLSTATE; no prototype is touched', { timeout: fuzzTestTimeout }, async () => {
  const data: RequestsFuzzData = { seed, runs: { json: runs(200), shaped: runs(400), text: runs(200) } };
  const tallies = await runInWorker(new URL('./requests-fuzz.ts', import.meta.url), data, INPUT_DEADLINE_MS);
  for (const [key, json] of Object.entries(tallies)) Tally.from(json).print(data.runs[key as keyof typeof data.runs], 'bytes');
});
