/**
 * What the soak knows: every job (its spec, its handle, what its caller saw),
 * the counters it prints, and the violations it found. A job's SQL encodes its
 * id — its effect is one row of soak_effects with that id, its rows carry it —
 * so any mix-up shows as an id where it does not belong.
 */
import type { Prng } from './prng.js';

export interface JobSpec {
  id: number;
  rows: number;
  sleepMs: number;
  /** The last statement fails with 22012 after rows - 1 rows. */
  fails: boolean;
}

export type Via = 'launch' | 'submit' | 'run' | 'run_query' | 'library';

/** committed: the caller learnt it committed; rolled-back: it learnt an error (SQLSTATE in seenCode); unknown: detached unseen. */
export type Seen = 'committed' | 'rolled-back' | 'unknown';

export interface JobRec {
  spec: JobSpec;
  via: Via;
  /** Caller session index; -1 for the library. */
  session: number;
  role: string;
  label: string | undefined;
  pid?: number;
  cookie?: string;
  cancelRequested: boolean;
  /** run/run_query overran its timeout (the server canceled it). */
  timedOut: boolean;
  seen: Seen;
  seenCode: string | undefined;
  /** The library's jobs: the final state the engine told its observer. */
  engineState?: string | undefined;
  /**
   * PostgreSQL's clock (µs since the epoch) once its first cancel had been delivered: read after
   * the cancel call returned, which it does once the worker's backend was signalled.
   */
  cancelDoneAt?: bigint;
  /** performance.now() when its launch answered (for the failure message: when a cancel came). */
  launchedAt?: number;
  /** The launch itself failed (no handle). */
  launchFailed?: boolean;
  /** The operations done on it, for the failure message (bounded). */
  trace: string[];
}

export const LIBRARY_ID_BASE = 1_500_000_000;

/** A job's size and pace: mostly small and quick, some medium, a few large or slow, a few failing. */
export function drawSpec(rng: Prng, id: number, maxRows: number): JobSpec {
  const size = rng.weighted({ none: 5, small: 60, medium: 28, large: 7 });
  let rows = size === 'none' ? 0 : size === 'small' ? rng.int(1, 20) : size === 'medium' ? rng.int(21, 5000) : rng.int(5001, Math.max(5001, maxRows));
  rows = Math.min(rows, maxRows);
  const pace = rng.weighted({ none: 55, short: 33, slow: 12 });
  const sleepMs = pace === 'none' ? 0 : pace === 'short' ? rng.int(1, 5) : rng.int(20, 150);
  const fails = rows > 0 && rng.chance(0.04);
  return { id, rows, sleepMs, fails };
}

/** One implicit transaction: the effect first, an optional sleep, then the rows (or the failure after rows - 1 of them). */
export function jobSql(s: JobSpec): string {
  const parts = [`INSERT INTO soak_effects(job_id) VALUES (${s.id})`];
  if (s.sleepMs > 0) parts.push(`SELECT pg_sleep(${(s.sleepMs / 1000).toFixed(3)})`);
  parts.push(s.fails
    ? `SELECT ${s.id} AS id, g + 0 * (1 / (g - ${s.rows})) AS g FROM generate_series(1, ${s.rows}) g`
    : `SELECT ${s.id} AS id, g FROM generate_series(1, ${s.rows}) g`);
  return parts.join('; ');
}

/** The job id a journal row's sql_preview names (the SQL's first statement). */
export function idOfPreview(preview: string): number | undefined {
  const m = /^INSERT INTO soak_effects\(job_id\) VALUES \((\d+)\)/.exec(preview);
  return m ? Number(m[1]) : undefined;
}

/**
 * Why `rows` are not the job's rows, or undefined when they are: all carry its id, g = 1..n in
 * order. `truncated`: fewer rows, but each one right (a prefix of the job's rows).
 */
export function wrongRows(s: JobSpec, rows: readonly { id: unknown; g: unknown }[]): { message: string; truncated: boolean } | undefined {
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (Number(r.id) !== s.id) return { message: `row ${i + 1} carries id ${String(r.id)} (another job's row)`, truncated: false };
    if (Number(r.g) !== i + 1) return { message: `row ${i + 1} has g = ${String(r.g)}`, truncated: false };
  }
  if (rows.length !== s.rows) return { message: `${rows.length} rows delivered, ${s.rows} expected`, truncated: rows.length < s.rows };
  return undefined;
}

/**
 * Known pgbg defects the soak can be told to count instead of failing on (--tolerate NAME):
 * each is still printed with its count and first examples.
 */
export const KNOWN_ISSUES = {
  'cancel-lost-before-start':
    'a cooperative cancel delivered before the worker\'s backend began the job\'s SQL is dropped by PostgreSQL (no statement to cancel): ' +
    'the job then runs to its end and commits, reported stopped, where 2.0 says a job canceled before its SQL starts just ends',
  'cancel-truncates-result':
    'a cancel that comes too late to stop the job (it commits: no error, journal stopped) still drops its unread rows: ' +
    'the result then succeeds with fewer rows (often none) than the job returned, while result_info/outcome report the full row_count',
} as const;
export type KnownIssue = keyof typeof KNOWN_ISSUES;

export class Ledger {
  readonly jobs = new Map<number, JobRec>();
  readonly violations: string[] = [];
  readonly ops = new Map<string, number>();
  readonly errors = new Map<string, number>();
  /** Stale-handle uses by the SQLSTATE they got (55000: the pid was reused by a handle this session tracks). */
  readonly stale = new Map<string, number>();
  /** Jobs whose fate the caller learnt since the last continuous check. */
  learnt: JobRec[] = [];
  libraryRounds = 0;
  /** How the library's races ended: which operation won, which codes the losers got. */
  readonly raceOutcomes = new Map<string, number>();
  jobsLaunched = 0;
  readonly startedAt = performance.now();
  /** Known issues met: how often, and the first few messages. */
  readonly issues = new Map<KnownIssue, { count: number; examples: string[] }>();

  constructor(readonly seed: number, readonly tolerated: ReadonlySet<KnownIssue> = new Set()) {}

  /** A known defect: a violation unless tolerated, then counted with its first examples. */
  issue(name: KnownIssue, message: string, rec?: JobRec): void {
    if (!this.tolerated.has(name)) {
      this.violation(`${message} [${name}: ${KNOWN_ISSUES[name]}]`, rec);
      return;
    }
    const entry = this.issues.get(name) ?? { count: 0, examples: [] };
    entry.count++;
    if (entry.examples.length < 3) entry.examples.push(`seed ${this.seed}: ${rec ? `job ${rec.spec.id} (${describe(rec)}): ` : ''}${message}`);
    this.issues.set(name, entry);
  }

  /** Rows a result delivered without an error, judged: right, cut short by a late cancel (a known issue), or wrong. */
  delivered(rec: JobRec, rows: readonly { id: unknown; g: unknown }[], what: string): void {
    const wrong = wrongRows(rec.spec, rows);
    if (wrong?.truncated && rec.cancelRequested) this.issue('cancel-truncates-result', `${what}: ${wrong.message}`, rec);
    else if (wrong) this.violation(`${what}: ${wrong.message}`, rec);
    // No error: the job ended without one, so it committed (whatever the rows).
    this.see(rec, 'committed');
  }

  add(rec: JobRec): void {
    if (this.jobs.has(rec.spec.id)) throw new Error(`job id ${rec.spec.id} used twice`);
    this.jobs.set(rec.spec.id, rec);
    this.jobsLaunched++;
  }

  /** Milliseconds the SQL calls of each kind took, in all. */
  readonly opMs = new Map<string, number>();

  time(kind: string, ms: number): void {
    this.opMs.set(kind, (this.opMs.get(kind) ?? 0) + ms);
  }

  op(kind: string): void {
    this.ops.set(kind, (this.ops.get(kind) ?? 0) + 1);
  }

  error(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  count(map: Map<string, number>, key: string): void {
    map.set(key, (map.get(key) ?? 0) + 1);
  }

  /** A cancel of the job returned at `at` (PostgreSQL's clock, µs): the earliest one counts. */
  canceled(rec: JobRec, at: string | undefined): void {
    rec.cancelRequested = true;
    if (at === undefined) return;
    const t = BigInt(at);
    if (rec.cancelDoneAt === undefined || t < rec.cancelDoneAt) rec.cancelDoneAt = t;
  }

  /** ms since the job's launch answered, as a note's suffix. */
  since(rec: JobRec): string {
    return rec.launchedAt === undefined ? '' : `@+${Math.round(performance.now() - rec.launchedAt)}ms`;
  }

  note(rec: JobRec, what: string): void {
    if (rec.trace.length < 16) rec.trace.push(what);
    else if (rec.trace.length === 16) rec.trace.push('…');
  }

  violation(message: string, rec?: JobRec): void {
    const where = rec ? `job ${rec.spec.id} (${describe(rec)}): ` : '';
    const line = `seed ${this.seed}: ${where}${message}`;
    if (this.violations.length < 100) this.violations.push(line);
  }

  /** The caller learnt the job's fate; a second, different verdict is a violation. */
  see(rec: JobRec, seen: Exclude<Seen, 'unknown'>, code?: string): void {
    if (rec.seen !== 'unknown' && rec.seen !== seen) {
      this.violation(`seen ${seen}${code ? ` (${code})` : ''} after it was seen ${rec.seen}${rec.seenCode ? ` (${rec.seenCode})` : ''}`, rec);
      return;
    }
    if (rec.seen === 'unknown') this.learnt.push(rec);
    rec.seen = seen;
    if (code !== undefined) rec.seenCode = code;
    if (seen === 'committed' && rec.spec.fails) this.violation('seen committed, yet its last statement divides by zero', rec);
    if (seen === 'rolled-back' && code === '57014' && !rec.cancelRequested && !rec.timedOut) this.violation('57014 without a cancel', rec);
    if (seen === 'rolled-back' && code !== '57014' && code !== '22012') this.violation(`failed with ${code ?? 'no SQLSTATE'}`, rec);
    if (seen === 'rolled-back' && code === '22012' && !rec.spec.fails) this.violation('22012 from a job that does not divide by zero', rec);
  }
}

export function describe(rec: JobRec): string {
  const s = rec.spec;
  const handle = rec.pid !== undefined ? ` handle (${rec.pid},${rec.cookie})` : '';
  return `${rec.via} as ${rec.role}${rec.session >= 0 ? ` in session ${rec.session}` : ''}${handle}, ${s.rows} rows, sleep ${s.sleepMs} ms${s.fails ? ', fails' : ''}` +
    `${rec.cancelRequested ? ', canceled' : ''}${rec.timedOut ? ', timed out' : ''}; seen ${rec.seen}${rec.seenCode ? ` ${rec.seenCode}` : ''}; ops: ${rec.trace.join(' → ') || 'none'}`;
}

/** PostgreSQL's clock in µs since the epoch, as text (a float8 epoch would lose the microseconds). */
export const PG_NOW_US = '(extract(epoch FROM clock_timestamp()) * 1000000)::int8::text';

/** The SQLSTATE of an error, or 'none' (a client-side failure: a timeout, a lost connection). */
export function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : 'none';
}
