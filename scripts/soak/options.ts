/** The soak's options: defaults, bounds, and the command line that sets them. */
import { parseArgs } from 'node:util';
import { KNOWN_ISSUES, type KnownIssue } from './ledger.js';

export interface SoakOptions {
  seed: number;
  /** Jobs the SQL callers run (launch, submit, run, run_query). */
  jobs: number;
  /** Caller sessions (pg.Client, one backend each), spread over the roles. */
  sessions: number;
  roles: number;
  /** Concurrent detach/result/cancel rounds of the in-process library (one job each). */
  libraryRounds: number;
  /** Largest result, in rows. */
  maxRows: number;
  /** Share of the jobs before the warm-up checkpoint (memory is judged after it). */
  warmup: number;
  /** The whole run must end within this; then launches stop and it fails. */
  deadlineMs: number;
  /** RSS slope (MB per 1,000 jobs after warm-up) above which the run fails, once enough jobs ran to tell. */
  rssSlopeLimit: number;
  /** Jobs after warm-up from which the slope limit is enforced (shorter runs only report it). */
  rssEnforceFrom: number;
  /** The pgbg server: the build through bin/pgbg (as installed), or the sources through tsx. */
  server: 'build' | 'source';
  /** Where the JSON summary goes. */
  out: string;
  /** Where the server's temporary data folder is made (default: the OS's temporary folder). */
  dataRoot: string | undefined;
  quiet: boolean;
  /** Known pgbg defects counted and printed instead of failing the run. */
  tolerate: KnownIssue[];
}

const BOUNDS = {
  jobs: [1, 1_000_000],
  sessions: [1, 32],
  roles: [1, 8],
  'library-rounds': [0, 20_000],
  'max-rows': [1, 200_000],
} as const;

export const USAGE = `usage: npm run soak -- [--seed S] [--jobs N] [--sessions N] [--roles N] [--library-rounds N]
         [--max-rows N] [--warmup FRACTION] [--deadline-s S] [--rss-slope-limit MB] [--rss-enforce-from JOBS]
         [--server build|source] [--out FILE] [--data-root DIR] [--quiet] [--tolerate KNOWN-ISSUE[,…]]
  --jobs 300 (CI) … 100000 (the long run); sessions default 6, roles 3, library rounds jobs/10 (10..2000).`;

function int(name: keyof typeof BOUNDS, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  const [lo, hi] = BOUNDS[name];
  if (!Number.isInteger(n) || n < lo || n > hi) throw new RangeError(`--${name}: a whole number in ${lo}..${hi} (got ${raw})`);
  return n;
}

export function parseOptions(argv: string[]): SoakOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      seed: { type: 'string' },
      jobs: { type: 'string' },
      sessions: { type: 'string' },
      roles: { type: 'string' },
      'library-rounds': { type: 'string' },
      'max-rows': { type: 'string' },
      warmup: { type: 'string' },
      'deadline-s': { type: 'string' },
      'rss-slope-limit': { type: 'string' },
      'rss-enforce-from': { type: 'string' },
      server: { type: 'string' },
      out: { type: 'string' },
      'data-root': { type: 'string' },
      quiet: { type: 'boolean' },
      tolerate: { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) throw new UsageRequested();
  const seed = values.seed === undefined ? 1 : Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`--seed: a whole number in 0..4294967295 (got ${values.seed})`);
  const jobs = int('jobs', values.jobs, 300);
  const sessions = int('sessions', values.sessions, Math.min(6, jobs));
  const roles = Math.min(int('roles', values.roles, 3), sessions);
  const libraryRounds = int('library-rounds', values['library-rounds'], Math.max(10, Math.min(2000, Math.round(jobs / 10))));
  const maxRows = int('max-rows', values['max-rows'], 50_000);
  const warmup = values.warmup === undefined ? 0.2 : Number(values.warmup);
  if (!(warmup >= 0 && warmup <= 0.8)) throw new RangeError(`--warmup: a fraction in 0..0.8 (got ${values.warmup})`);
  // About 10 ms per job on a slow 2-core machine, with room: 300 jobs → 3 min, 100,000 → 3.5 h.
  const deadlineS = values['deadline-s'] === undefined ? Math.round(150 + jobs * 0.12) : Number(values['deadline-s']);
  if (!(deadlineS >= 10 && deadlineS <= 86_400)) throw new RangeError(`--deadline-s: 10..86400 (got ${values['deadline-s']})`);
  const rssSlopeLimit = values['rss-slope-limit'] === undefined ? 5 : Number(values['rss-slope-limit']);
  if (!(rssSlopeLimit > 0)) throw new RangeError(`--rss-slope-limit: MB per 1,000 jobs, above 0 (got ${values['rss-slope-limit']})`);
  const rssEnforceFrom = values['rss-enforce-from'] === undefined ? 20_000 : Number(values['rss-enforce-from']);
  if (!(Number.isInteger(rssEnforceFrom) && rssEnforceFrom >= 0)) throw new RangeError(`--rss-enforce-from: jobs, 0 or more (got ${values['rss-enforce-from']})`);
  const server = values.server ?? 'build';
  if (server !== 'build' && server !== 'source') throw new RangeError(`--server: build or source (got ${server})`);
  const tolerate = (values.tolerate ?? '').split(',').filter(Boolean);
  for (const t of tolerate) if (!(t in KNOWN_ISSUES)) throw new RangeError(`--tolerate: one of ${Object.keys(KNOWN_ISSUES).join(', ')} (got ${t})`);
  return {
    tolerate: tolerate as KnownIssue[], seed, jobs, sessions, roles, libraryRounds, maxRows, warmup, deadlineMs: deadlineS * 1000, rssSlopeLimit, rssEnforceFrom,
    server, out: values.out ?? '.tmp/soak/last.json', dataRoot: values['data-root'], quiet: values.quiet ?? false,
  };
}

export class UsageRequested extends Error {
  constructor() {
    super(USAGE);
  }
}
