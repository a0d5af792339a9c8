/**
 * Fuzzing the SQL classifier (src/sql/classify.ts) with fast-check: SQL token
 * soup, any text (NUL, lone surrogates, bytes decoded as the endpoint decodes
 * them), deep nesting of every kind around the parsers' limits, and one 50 MB
 * text. The properties run in a worker thread (classify-fuzz.ts), so a hang
 * is caught by this thread's timer and a crash does not end this process.
 */
import { test } from 'node:test';
import { fuzzTestTimeout, runInWorker, runs, seed, Tally } from './support.js';
import type { ClassifyFuzzData } from './classify-fuzz.js';

/** Longest one input may take (the 50 MB text takes seconds; a hang takes forever). */
const INPUT_DEADLINE_MS = 90_000;

test('every text classifies or is refused with a SQLSTATE, as the server will receive it; none hangs or crashes', { timeout: fuzzTestTimeout }, async () => {
  const data: ClassifyFuzzData = {
    seed,
    runs: { soup: runs(300), text: runs(300), deep: runs(40) },
    hugeChars: 50 * 1024 * 1024,
  };
  const tallies = await runInWorker(new URL('./classify-fuzz.ts', import.meta.url), data, INPUT_DEADLINE_MS);
  const counts: Record<string, number> = { soup: data.runs.soup, text: data.runs.text, deep: data.runs.deep, huge: 1 };
  for (const [key, json] of Object.entries(tallies)) Tally.from(json).print(counts[key] ?? 0, 'characters');
});
