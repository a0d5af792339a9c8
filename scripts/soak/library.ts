/**
 * The library part: an Engine and a Session in this process, against the same
 * PostgreSQL, racing detach, result, cancel and wait on one handle at a time
 * (Promise.all: one SQL connection cannot issue concurrent calls, the library
 * can). Whichever wins, the losers must fail with the codes that order
 * implies, the rows delivered must be the job's and all of them, and the
 * engine's final word on the job (its observer) must match its effect.
 */
import pg from 'pg';
import { Engine, type Handle, type JobObserver, type JobSnapshot, type Session } from '../../src/index.js';
import { codeOf, drawSpec, jobSql, LIBRARY_ID_BASE, PG_NOW_US, type JobRec, type Ledger } from './ledger.js';
import type { Prng } from './prng.js';

export interface LibraryContext {
  ledger: Ledger;
  rng: Prng;
  connection: pg.ClientConfig;
  role: string;
  rounds: number;
  warmRounds: number;
  maxRows: number;
  deadlineAt: number;
  checkpoint(): Promise<void>;
  tick(): void;
}

type Racer = 'result' | 'detach' | 'cancel' | 'cancel_coop' | 'cancel_grace' | 'wait';
const CANCELS: readonly Racer[] = ['cancel', 'cancel_coop', 'cancel_grace'];

export async function runLibrary(ctx: LibraryContext): Promise<void> {
  const ended = new Map<string, JobSnapshot>();
  const waiters = new Map<string, () => void>();
  const observer: JobObserver = {
    started: () => undefined,
    ended: (j) => {
      const key = String(j.cookie);
      ended.set(key, j);
      waiters.get(key)?.();
    },
  };
  const engine = new Engine({ observer, pool: { maxConnections: 16, idleTimeoutMs: 500 } });
  const launcher = new pg.Client(ctx.connection);
  // PostgreSQL's clock, read after each cancel: on a connection of its own, one query at a time.
  const clockClient = new pg.Client(ctx.connection);
  let tail: Promise<unknown> = Promise.resolve();
  const clock = (): Promise<string | undefined> => {
    const read = tail.then(() => clockClient.query<{ at: string }>(`SELECT ${PG_NOW_US} AS at`)).then((r) => r.rows[0]?.at);
    tail = read.catch(() => undefined);
    return read;
  };
  // Their loss (the server stopping under a signal) fails the calls that need them, never the process.
  for (const c of [launcher, clockClient]) c.on('error', (err) => ctx.ledger.violation(`a library connection failed: ${err.message}`));
  let session: Session | undefined;
  let arrived = false;
  try {
    await launcher.connect();
    await clockClient.connect();
    session = engine.session({ launcher });
    let previous: Handle | undefined;
    for (let r = 0; r < ctx.rounds && performance.now() < ctx.deadlineAt; r++) {
      if (r === ctx.warmRounds) {
        arrived = true;
        await ctx.checkpoint();
      }
      previous = await round(ctx, session, clock, r, previous, async (cookie) => {
        const key = String(cookie);
        for (let i = 0; i < 300 && !ended.has(key); i++) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, 100);
            waiters.set(key, () => {
              clearTimeout(timer);
              resolve();
            });
          });
        }
        waiters.delete(key);
        const snap = ended.get(key);
        ended.delete(key);
        return snap;
      });
      ctx.ledger.libraryRounds++;
      ctx.tick();
    }
  } finally {
    if (!arrived) await ctx.checkpoint();
    session?.close();
    await engine.close({ graceMs: 5000 });
    await launcher.end().catch(() => undefined);
    await clockClient.end().catch(() => undefined);
  }
}

async function round(
  ctx: LibraryContext, session: Session, clock: () => Promise<string | undefined>, r: number, previous: Handle | undefined, endOf: (cookie: bigint) => Promise<JobSnapshot | undefined>,
): Promise<Handle> {
  const { ledger, rng } = ctx;
  const spec = drawSpec(rng, LIBRARY_ID_BASE + r, ctx.maxRows);
  const rec: JobRec = {
    spec, via: 'library', session: -1, role: ctx.role, label: undefined, cancelRequested: false, timedOut: false, seen: 'unknown', seenCode: undefined, trace: [],
  };
  ledger.add(rec);
  const queueSize = spec.rows > 2000 && rng.chance(0.5) ? 1_048_576 : 0;
  ledger.op('library_launch');
  const h = await session.launch(jobSql(spec), { queueSize });
  rec.pid = h.pid;
  rec.cookie = String(h.cookie);
  rec.launchedAt = performance.now();

  // The previous round's handle, now stale: its pid is often this job's (the pool reuses the worker).
  if (previous) await staleUse(ctx, session, previous, previous.pid === h.pid ? '55000' : '42704');
  // This handle with a cookie it was never given.
  await staleUse(ctx, session, { pid: h.pid, cookie: h.cookie ^ 0x5a5an }, '55000');

  const first = rng.pick<Racer[]>([['result', 'detach'], ['result', 'cancel'], ['result', 'cancel_coop'], ['detach', 'cancel'], ['result', 'cancel_grace'], ['detach', 'cancel_coop']]);
  const extra = rng.shuffle((['result', 'detach', 'cancel', 'cancel_coop', 'cancel_grace', 'wait'] as Racer[]).filter((k) => !first.includes(k))).slice(0, rng.int(0, 2));
  const racers = rng.shuffle([...first, ...extra]);
  const delays = racers.map(() => rng.pick([0, 0, 0, 1, 2, 5]));
  const grace = rng.int(5, 50);
  ledger.note(rec, `race ${racers.map((k, i) => `${k}@${delays[i]}`).join(' ')}`);
  const run = async (k: Racer, delay: number): Promise<unknown> => {
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    ledger.op(`library_${k}`);
    switch (k) {
      case 'result': return session.result<{ id: number; g: number }>(h);
      case 'detach': return session.detach(h);
      case 'wait': return session.waitTimeout(h, 200);
      default: {
        await (k === 'cancel' ? session.cancel(h) : k === 'cancel_coop' ? session.cancel(h, { cooperative: true }) : session.cancel(h, { graceMs: grace }));
        // Resolved: the backend was signalled; PostgreSQL's clock from now on is later than that.
        ledger.canceled(rec, await clock());
        return undefined;
      }
    }
  };
  const settled = await Promise.allSettled(racers.map((k, i) => run(k, delays[i]!)));
  const pattern: string[] = [];
  settled.forEach((s, i) => {
    const k = racers[i]!;
    pattern.push(`${k}:${s.status === 'fulfilled' ? 'ok' : codeOf(s.reason)}`);
    // A cancel that lost the race (42704) asked nothing; one that failed otherwise may have.
    if (CANCELS.includes(k) && (s.status === 'fulfilled' || codeOf(s.reason) !== '42704')) rec.cancelRequested = true;
  });
  ledger.count(ledger.raceOutcomes, pattern.sort().join(' '));
  ledger.note(rec, pattern.join(' '));
  settled.forEach((s, i) => {
    const k = racers[i]!;
    if (s.status === 'fulfilled') {
      if (k === 'result') {
        ledger.delivered(rec, (s.value as { rows: { id: number; g: number }[] }).rows, 'library result');
      }
      return;
    }
    const code = codeOf(s.reason);
    ledger.error(code);
    // (result: 55000 when a cancel too late to stop the job dropped rows its queue could not hold; the job committed.)
    const allowed = k === 'result' ? ['42704', '57014', '22012', '55000'] : k === 'wait' ? ['42704', '55000'] : ['42704'];
    if (!allowed.includes(code)) ledger.violation(`library ${k} lost the race with ${code} ${(s.reason as Error).message}`, rec);
    else if (k === 'result' && (code === '57014' || code === '22012')) ledger.see(rec, 'rolled-back', code);
    else if (k === 'result' && code === '55000' && /dropped by a cancel/.test((s.reason as Error).message)) ledger.see(rec, 'committed', code);
    else if (k === 'result' && code === '55000') ledger.violation(`library result lost the race with ${code} ${(s.reason as Error).message}`, rec);
  });
  // Whatever the race left tracked (a cancel or a wait alone) is let go.
  if (session.tryTrackedJob(h)) session.detach(h);

  const snap = await endOf(h.cookie);
  if (!snap) {
    ledger.violation('the engine never reported the job ended', rec);
    return h;
  }
  rec.engineState = snap.state;
  if (snap.pid !== h.pid) ledger.violation(`the engine reported it ended on pid ${snap.pid}`, rec);
  if (snap.state === 'canceled' && !rec.cancelRequested) ledger.violation('the engine reported it canceled without a cancel', rec);
  if (rec.seen === 'committed' && snap.state !== 'stopped') ledger.violation(`its rows were delivered, yet the engine reported it ${snap.state} (${snap.errorCode})`, rec);
  if (rec.seen === 'rolled-back' && snap.state === 'stopped') ledger.violation(`its result raised ${rec.seenCode}, yet the engine reported it stopped`, rec);
  if (snap.state === 'error' && !(spec.fails && snap.errorCode === '22012')) ledger.violation(`the engine reported it failed: ${snap.errorCode} ${snap.errorMessage}`, rec);
  return h;
}

async function staleUse(ctx: LibraryContext, session: Session, h: Handle, expected: string): Promise<void> {
  const { ledger, rng } = ctx;
  const call = rng.pick(['detach', 'result', 'cancel', 'wait'] as const);
  ledger.op(`library_stale_${call}`);
  try {
    if (call === 'detach') session.detach(h);
    else if (call === 'result') await session.result(h);
    else if (call === 'cancel') await session.cancel(h);
    else await session.waitTimeout(h, 1);
    ledger.violation(`library: ${call} with the stale handle (${h.pid},${h.cookie}) succeeded; ${expected} expected`);
  } catch (err) {
    const code = codeOf(err);
    ledger.error(code);
    ledger.count(ledger.stale, `library ${code}`);
    if (code !== expected) ledger.violation(`library: ${call} with the stale handle (${h.pid},${h.cookie}): ${code} ${(err as Error).message}; ${expected} expected`);
  }
}
