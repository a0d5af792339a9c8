/**
 * One caller session of the SQL API: a pg.Client logged in as one role (one
 * backend, so one pgbg session), doing a seeded random mix of the 2.0 calls on
 * the handles it tracks, one call at a time, and checking each answer against
 * what it knows: its own model of which handles it tracks.
 */
import type pg from 'pg';
import { codeOf, drawSpec, idOfPreview, jobSql, PG_NOW_US, type JobRec, type Ledger, type Via } from './ledger.js';
import type { Prng } from './prng.js';

export interface Tracked {
  rec: JobRec;
  pid: number;
  cookie: string;
  /** Launched (results enabled), not submitted. */
  results: boolean;
}

export interface StaleHandle {
  pid: number;
  cookie: string;
  id: number;
}

export interface CallerContext {
  index: number;
  role: string;
  client: pg.Client;
  rng: Prng;
  ledger: Ledger;
  /** Job ids [first, end) are this session's; the warm-up checkpoint comes before `warmEnd`. */
  first: number;
  warmEnd: number;
  end: number;
  maxRows: number;
  deadlineAt: number;
  /** Resolves when every loop reached the warm-up checkpoint and the server's memory was read. */
  checkpoint(): Promise<void>;
  /** After each call: the soak samples memory and checks effects every so many. */
  tick(): void;
  /** Handles other sessions hold or held (for cross-session checks). */
  foreign(): StaleHandle[];
}

/** Handles one session keeps at most (pg_background.max_workers is 16). */
const MAX_TRACKED = 8;
const MAX_STALE = 32;

const HANDLE_COLUMNS = 'pid, cookie::text AS cookie';

export class SqlCaller {
  readonly tracked: Tracked[] = [];
  readonly stale: StaleHandle[] = [];
  launched = 0;
  #next: number;

  constructor(private readonly ctx: CallerContext) {
    this.#next = ctx.first;
  }

  /** Runs the session's jobs; arrives at the warm-up checkpoint exactly once, whatever happens. */
  async run(): Promise<void> {
    let warm = false;
    try {
      await this.#loop(() => (warm = true));
    } finally {
      if (!warm) await this.ctx.checkpoint();
    }
  }

  async #loop(arriving: () => void): Promise<void> {
    const { ctx } = this;
    let phaseEnd = ctx.warmEnd;
    let warm = false;
    // Bounded: every job takes a few calls; past this many the session stops launching and settles.
    let callsLeft = (ctx.end - ctx.first) * 16 + 200;
    while (true) {
      const stop = performance.now() > ctx.deadlineAt || callsLeft-- <= 0;
      const canLaunch = !stop && this.#next < phaseEnd;
      if (!canLaunch && this.tracked.length === 0) {
        if (!warm) {
          warm = true;
          arriving();
          await ctx.checkpoint();
          phaseEnd = ctx.end;
          continue;
        }
        break;
      }
      if (canLaunch) await this.#step();
      else await this.#settle(this.tracked[0]!);
      ctx.tick();
    }
    await this.#checkStats();
  }

  async #step(): Promise<void> {
    const { rng } = this.ctx;
    const room = this.tracked.length < MAX_TRACKED;
    const has = this.tracked.length > 0;
    const labelled = this.tracked.some((t) => t.rec.label !== undefined);
    const submitted = this.tracked.some((t) => !t.results);
    const launched = this.tracked.some((t) => t.results);
    const op = rng.weighted({
      launch: room ? 24 : 0, submit: room ? 10 : 0, run: 4, run_query: 4,
      result: launched ? 14 : 0, detach: has ? 6 : 0, cancel: has ? 7 : 0, wait: has ? 10 : 0, outcome: has ? 5 : 0,
      list: 3, stale: this.stale.length > 0 ? 5 : 0, foreign: 2, result_submitted: submitted ? 1 : 0,
      cancel_by_label: labelled ? 2 : 0, wait_any: has ? 2 : 0, drain: has ? 2 : 0,
    });
    const pick = () => rng.pick(this.tracked);
    switch (op) {
      case 'launch': case 'submit': return this.#launch(op);
      case 'run': return this.#run();
      case 'run_query': return this.#runQuery();
      case 'result': return this.#result(rng.pick(this.tracked.filter((t) => t.results)));
      case 'detach': return this.#detach(pick());
      case 'cancel': return this.#cancel(pick());
      case 'wait': return this.#wait(pick());
      case 'outcome': return this.#outcome(pick());
      case 'list': return this.#list();
      case 'stale': return this.#staleUse(rng.pick(this.stale), 'stale');
      case 'foreign': {
        // One draw either way, so the choices after it do not depend on how far the other sessions got.
        const x = rng.next();
        const others = this.ctx.foreign();
        return others.length > 0 ? this.#staleUse(others[Math.floor(x * others.length)]!, 'foreign') : this.#list();
      }
      case 'result_submitted': return this.#resultSubmitted(rng.pick(this.tracked.filter((t) => !t.results)));
      case 'cancel_by_label': return this.#cancelByLabel(rng.pick(this.tracked.filter((t) => t.rec.label !== undefined)));
      case 'wait_any': return this.#waitAny();
      case 'drain': return this.#drain();
    }
  }

  /** Ends a tracked handle's life: its rows read, or waited for, its outcome read and detached. */
  async #settle(t: Tracked): Promise<void> {
    if (t.results) return this.#result(t);
    if (this.ctx.rng.chance(0.3)) return this.#drain();
    await this.#wait(t, 0);
    if (this.tracked.includes(t)) {
      await this.#outcome(t);
      await this.#detach(t);
    }
  }

  // ---- calls ----

  async #q<R extends pg.QueryResultRow>(kind: string, text: string, values: unknown[] = []): Promise<R[]> {
    this.ctx.ledger.op(kind);
    const t0 = performance.now();
    try {
      return (await this.ctx.client.query<R>(text, values)).rows;
    } finally {
      this.ctx.ledger.time(kind, performance.now() - t0);
    }
  }

  /** An error the call may raise: counted by SQLSTATE; any other is a violation. */
  #expected(err: unknown, allowed: readonly string[], what: string, rec?: JobRec): string {
    const code = codeOf(err);
    this.ctx.ledger.error(code);
    if (!allowed.includes(code)) this.ctx.ledger.violation(`${what}: unexpected ${code} ${(err as Error).message}`, rec);
    return code;
  }

  #newJob(via: Via): JobRec {
    const { ctx } = this;
    const spec = drawSpec(ctx.rng, this.#next++, ctx.maxRows);
    const label = via === 'launch' || via === 'submit' || via === 'run' ? (ctx.rng.chance(0.3) ? `soak-${spec.id}` : undefined) : undefined;
    const rec: JobRec = {
      spec, via, session: ctx.index, role: ctx.role, label, cancelRequested: false, timedOut: false, seen: 'unknown', seenCode: undefined, trace: [],
    };
    ctx.ledger.add(rec);
    this.launched++;
    return rec;
  }

  #handleOf(rec: JobRec, row: { pid: number; cookie: string } | undefined): boolean {
    if (!row || typeof row.pid !== 'number' || typeof row.cookie !== 'string') {
      this.ctx.ledger.violation(`no handle in the answer: ${JSON.stringify(row)}`, rec);
      return false;
    }
    rec.pid = row.pid;
    rec.cookie = row.cookie;
    return true;
  }

  #untrack(t: Tracked): void {
    const i = this.tracked.indexOf(t);
    if (i >= 0) this.tracked.splice(i, 1);
    this.stale.push({ pid: t.pid, cookie: t.cookie, id: t.rec.spec.id });
    if (this.stale.length > MAX_STALE) this.stale.shift();
  }

  async #launch(via: 'launch' | 'submit'): Promise<void> {
    const { rng, ledger } = this.ctx;
    const rec = this.#newJob(via);
    const queue = rec.spec.rows > 2000 && rng.chance(0.5) ? rng.pick([262_144, 1_048_576]) : 0;
    const fn = via === 'launch' ? 'pg_background_launch' : 'pg_background_submit';
    const text = rec.label !== undefined ? `SELECT ${HANDLE_COLUMNS} FROM ${fn}($1, $2, $3)` : `SELECT ${HANDLE_COLUMNS} FROM ${fn}($1, $2)`;
    const values = rec.label !== undefined ? [jobSql(rec.spec), queue, rec.label] : [jobSql(rec.spec), queue];
    ledger.note(rec, via);
    try {
      const [row] = await this.#q<{ pid: number; cookie: string }>(via, text, values);
      if (!this.#handleOf(rec, row)) return;
      rec.launchedAt = performance.now();
      if (this.tracked.some((t) => t.pid === row!.pid)) ledger.violation(`pid ${row!.pid} handed out while this session tracks it`, rec);
      this.tracked.push({ rec, pid: row!.pid, cookie: row!.cookie, results: via === 'launch' });
    } catch (err) {
      this.#expected(err, [], via, rec);
      rec.launchFailed = true;
    }
  }

  async #result(t: Tracked): Promise<void> {
    const { ledger } = this.ctx;
    const rec = t.rec;
    ledger.note(rec, 'result');
    try {
      const rows = await this.#q<{ id: number; g: number }>('result', 'SELECT id, g FROM pg_background_result($1, $2) AS r(id int4, g int4)', [t.pid, t.cookie]);
      ledger.delivered(rec, rows, 'result');
    } catch (err) {
      // 55000 after a cancel: it came too late to stop the job (which committed) but dropped rows its queue could not hold.
      const code = this.#expected(err, rec.cancelRequested ? ['57014', '22012', '55000'] : ['57014', '22012'], 'result', rec);
      if (code === '57014' || code === '22012') ledger.see(rec, 'rolled-back', code);
      else if (code === '55000' && /dropped by a cancel/.test((err as Error).message)) ledger.see(rec, 'committed', code);
      else if (code === '55000') ledger.violation(`result: unexpected ${code} ${(err as Error).message}`, rec);
    }
    this.#untrack(t);
  }

  async #resultSubmitted(t: Tracked): Promise<void> {
    this.ctx.ledger.note(t.rec, 'result(submitted)');
    try {
      await this.#q('result_submitted', 'SELECT id, g FROM pg_background_result($1, $2) AS r(id int4, g int4)', [t.pid, t.cookie]);
      this.ctx.ledger.violation('result of a submitted handle gave rows', t.rec);
    } catch (err) {
      this.#expected(err, ['0A000'], 'result of a submitted handle', t.rec);
    }
  }

  async #detach(t: Tracked): Promise<void> {
    this.ctx.ledger.note(t.rec, 'detach');
    try {
      await this.#q('detach', 'SELECT pg_background_detach($1, $2)', [t.pid, t.cookie]);
    } catch (err) {
      this.#expected(err, [], 'detach', t.rec);
    }
    this.#untrack(t);
  }

  async #cancel(t: Tracked): Promise<void> {
    const grace = this.ctx.rng.chance(0.7) ? 0 : this.ctx.rng.int(1, 30);
    this.ctx.ledger.note(t.rec, `cancel(${grace})${this.ctx.ledger.since(t.rec)}`);
    t.rec.cancelRequested = true;
    try {
      // The clock is read once the cancel returned (the subquery runs first): the backend was signalled by then.
      const [row] = await this.#q<{ at: string }>(grace === 0 ? 'cancel' : 'cancel_grace',
        `SELECT ${PG_NOW_US} AS at FROM (SELECT pg_background_cancel($1, $2, $3) OFFSET 0) c`, [t.pid, t.cookie, grace]);
      this.ctx.ledger.canceled(t.rec, row?.at);
    } catch (err) {
      this.#expected(err, [], 'cancel', t.rec);
    }
  }

  async #cancelByLabel(t: Tracked): Promise<void> {
    this.ctx.ledger.note(t.rec, `cancel_by_label${this.ctx.ledger.since(t.rec)}`);
    t.rec.cancelRequested = true;
    try {
      const [row] = await this.#q<{ n: number; at: string }>('cancel_by_label',
        `SELECT n, ${PG_NOW_US} AS at FROM (SELECT pg_background_cancel_by_label($1, 0) AS n OFFSET 0) c`, [t.rec.label]);
      this.ctx.ledger.canceled(t.rec, row?.at);
      if (row?.n !== 1) this.ctx.ledger.violation(`cancel_by_label('${t.rec.label}') canceled ${row?.n} jobs, not 1`, t.rec);
    } catch (err) {
      this.#expected(err, [], 'cancel_by_label', t.rec);
    }
  }

  async #wait(t: Tracked, timeout = this.ctx.rng.pick([0, 0, 1, 5, 20, 100])): Promise<void> {
    const { ledger, rng } = this.ctx;
    ledger.note(t.rec, `wait(${timeout})`);
    // Drawn whatever the wait answers: a seed's later choices never depend on timing.
    const thenOutcome = rng.chance(0.5);
    try {
      const [row] = await this.#q<{ w: boolean }>(timeout === 0 ? 'wait' : 'wait_timeout', 'SELECT pg_background_wait($1, $2, $3) AS w', [t.pid, t.cookie, timeout]);
      if (row?.w !== true && (row?.w !== false || timeout === 0)) ledger.violation(`wait(${timeout}) answered ${row?.w}`, t.rec);
      if (row?.w === true && thenOutcome) await this.#outcome(t);
    } catch (err) {
      // A job whose unread rows fill its queue cannot end until they are read.
      const stalled = t.results && t.rec.spec.rows >= 1000 && /waiting for its results to be read/.test((err as Error).message);
      this.#expected(err, stalled ? ['55000'] : [], `wait(${timeout})`, t.rec);
    }
  }

  async #outcome(t: Tracked): Promise<void> {
    const { ledger } = this.ctx;
    const rec = t.rec;
    ledger.note(rec, 'outcome');
    const [o] = await this.#q<{ pid: number; cookie: string; state: string; completed: boolean; has_error: boolean; sqlstate: string | null; row_count: string; command_tag: string; label: string | null }>(
      'outcome', 'SELECT pid, cookie::text AS cookie, state, completed, has_error, sqlstate, row_count, command_tag, label FROM pg_background_outcome($1, $2)', [t.pid, t.cookie]);
    if (!o || o.pid !== t.pid || o.cookie !== t.cookie || o.label !== (rec.label ?? null)) {
      ledger.violation(`outcome of a tracked handle: ${JSON.stringify(o)}`, rec);
      return;
    }
    if (!o.completed) {
      if (o.state !== 'running' && o.state !== 'starting') ledger.violation(`outcome: not completed, state ${o.state}`, rec);
      return;
    }
    if (o.state !== 'stopped') ledger.violation(`outcome: completed, state ${o.state}`, rec);
    if (o.has_error) {
      const [e] = await this.#q<{ sqlstate: string | null }>('error_info', 'SELECT sqlstate FROM pg_background_error_info($1, $2)', [t.pid, t.cookie]);
      if (e?.sqlstate !== o.sqlstate) ledger.violation(`error_info says ${e?.sqlstate}, outcome ${o.sqlstate}`, rec);
      ledger.see(rec, 'rolled-back', o.sqlstate ?? undefined);
    } else {
      if (o.command_tag !== 'SELECT' || Number(o.row_count) !== rec.spec.rows) ledger.violation(`outcome: ${o.command_tag} ${o.row_count}, SELECT ${rec.spec.rows} expected`, rec);
      ledger.see(rec, 'committed');
    }
  }

  async #list(): Promise<void> {
    const { ledger, rng } = this.ctx;
    type Row = { pid: number; cookie: string; state: string; sql_preview: string; label: string | null };
    const rows = rng.chance(0.5)
      ? await this.#q<Row>('list', 'SELECT pid, cookie::text AS cookie, state, sql_preview, label FROM pg_background_list')
      : await this.#q<Row>('list', `SELECT pid, cookie::text AS cookie, state, sql_preview, label FROM pg_background_list()
          AS (pid int4, cookie int8, launched_at timestamptz, user_id oid, queue_size int4, state text, sql_preview text, last_error text, consumed bool, label text)`);
    const expect = new Map(this.tracked.map((t) => [`${t.pid}/${t.cookie}`, t]));
    for (const r of rows) {
      const t = expect.get(`${r.pid}/${r.cookie}`);
      if (!t) {
        ledger.violation(`session ${this.ctx.index}: list shows (${r.pid},${r.cookie}) [${r.sql_preview.slice(0, 60)}], which it does not track`);
        continue;
      }
      expect.delete(`${r.pid}/${r.cookie}`);
      if (idOfPreview(r.sql_preview) !== t.rec.spec.id) ledger.violation(`list shows this handle with another job's SQL: ${r.sql_preview.slice(0, 60)}`, t.rec);
      if (r.label !== (t.rec.label ?? null)) ledger.violation(`list shows label ${r.label}`, t.rec);
    }
    for (const t of expect.values()) ledger.violation('tracked, but missing from the list', t.rec);
  }

  async #run(): Promise<void> {
    const { ledger, rng } = this.ctx;
    const rec = this.#newJob('run');
    const timeout = rec.spec.sleepMs >= 20 && rng.chance(0.4) ? rng.int(1, 15) : 0;
    ledger.note(rec, `run(${timeout})`);
    try {
      const [r] = await this.#q<{ pid: number; cookie: string; completed: boolean; has_error: boolean; sqlstate: string | null; timed_out: boolean }>(
        'run', `SELECT ${HANDLE_COLUMNS}, completed, has_error, sqlstate, timed_out FROM pg_background_run($1, 0, $2, $3)`, [jobSql(rec.spec), timeout, rec.label ?? null]);
      if (!this.#handleOf(rec, r)) return;
      if (r!.timed_out) {
        rec.timedOut = true;
        rec.cancelRequested = true;
      }
      if (r!.has_error) ledger.see(rec, 'rolled-back', r!.sqlstate ?? undefined);
      else if (r!.completed) ledger.see(rec, 'committed');
      this.stale.push({ pid: r!.pid, cookie: r!.cookie, id: rec.spec.id });
      if (this.stale.length > MAX_STALE) this.stale.shift();
    } catch (err) {
      this.#expected(err, [], 'run', rec);
    }
  }

  async #runQuery(): Promise<void> {
    const { ledger, rng } = this.ctx;
    const rec = this.#newJob('run_query');
    const timeout = rec.spec.sleepMs >= 20 && rng.chance(0.4) ? rng.int(1, 15) : 0;
    ledger.note(rec, `run_query(${timeout})`);
    try {
      const rows = await this.#q<{ id: number; g: number }>('run_query',
        "SELECT id, g FROM pg_background_run_query($1, 0, $2, NULL, 'id int4, g int4') AS r(id int4, g int4)", [jobSql(rec.spec), timeout]);
      ledger.delivered(rec, rows, 'run_query');
    } catch (err) {
      const code = this.#expected(err, timeout > 0 ? ['57014', '22012'] : ['22012'], 'run_query', rec);
      if (code === '57014') {
        // The overrun: canceled, detached; whether it committed first, the journal tells.
        rec.timedOut = true;
        rec.cancelRequested = true;
      } else if (code === '22012') {
        ledger.see(rec, 'rolled-back', code);
      }
    }
  }

  /** A handle this session no longer tracks (or never did): 55000 when it tracks that pid under another cookie, else 42704. */
  async #staleUse(h: StaleHandle, kind: 'stale' | 'foreign'): Promise<void> {
    const { ledger, rng } = this.ctx;
    const holder = this.tracked.find((t) => t.pid === h.pid);
    if (holder && holder.cookie === h.cookie) return; // (not stale: cannot happen, handles are per session)
    const expected = holder ? '55000' : '42704';
    const call = rng.pick(['detach', 'result', 'cancel', 'wait', 'error_info'] as const);
    const text = {
      detach: 'SELECT pg_background_detach($1, $2)',
      result: 'SELECT * FROM pg_background_result($1, $2) AS r(id int4, g int4)',
      cancel: 'SELECT pg_background_cancel($1, $2)',
      wait: 'SELECT pg_background_wait($1, $2, 1)',
      error_info: 'SELECT * FROM pg_background_error_info($1, $2)',
    }[call];
    try {
      await this.#q(`${kind}_${call}`, text, [h.pid, h.cookie]);
      ledger.violation(`session ${this.ctx.index}: ${call} with the ${kind} handle (${h.pid},${h.cookie}) of job ${h.id} succeeded; ${expected} expected`);
    } catch (err) {
      const code = codeOf(err);
      ledger.error(code);
      ledger.count(ledger.stale, `${kind} ${code}`);
      if (code !== expected) {
        ledger.violation(`session ${this.ctx.index}: ${call} with the ${kind} handle (${h.pid},${h.cookie}) of job ${h.id}: ${code} ${(err as Error).message}; ${expected} expected` +
          (holder ? ` (pid reused by job ${holder.rec.spec.id})` : ''));
      }
    }
  }

  async #waitAny(): Promise<void> {
    const { ledger } = this.ctx;
    const arr = `ARRAY[${this.tracked.map((t) => `ROW(${t.pid}, ${BigInt(t.cookie)})::pg_background_handle`).join(', ')}]`;
    const [r] = await this.#q<{ pid: number | null; cookie: string | null }>('wait_any', `SELECT ${HANDLE_COLUMNS} FROM pg_background_wait_any(${arr}, 20)`);
    if (r?.pid === null || r?.pid === undefined) return;
    const t = this.tracked.find((x) => x.pid === r.pid && x.cookie === r.cookie);
    if (!t) ledger.violation(`session ${this.ctx.index}: wait_any answered (${r.pid},${r.cookie}), not one of its handles`);
    else ledger.note(t.rec, 'wait_any: ended');
  }

  /** pg_background_drain over the submitted handles and small launched ones: each waited for, its outcome, detached. */
  async #drain(): Promise<void> {
    const { ledger } = this.ctx;
    const some = this.tracked.filter((t) => !t.results || t.rec.spec.rows < 1000).slice(0, 4);
    if (some.length === 0) return this.#list();
    const arr = `ARRAY[${some.map((t) => `ROW(${t.pid}, ${BigInt(t.cookie)})::pg_background_handle`).join(', ')}]`;
    for (const t of some) ledger.note(t.rec, 'drain');
    const rows = await this.#q<{ pid: number; cookie: string; completed: boolean; has_error: boolean; sqlstate: string | null; row_count: string }>(
      'drain', `SELECT ${HANDLE_COLUMNS}, completed, has_error, sqlstate, row_count FROM pg_background_drain(${arr}, 0)`);
    if (rows.length !== some.length) ledger.violation(`session ${this.ctx.index}: drain of ${some.length} handles answered ${rows.length} rows`);
    rows.forEach((r, i) => {
      const t = some[i];
      if (!t || r.pid !== t.pid || r.cookie !== t.cookie) {
        ledger.violation(`session ${this.ctx.index}: drain row ${i + 1} is (${r.pid},${r.cookie}), (${t?.pid},${t?.cookie}) expected`);
        return;
      }
      if (!r.completed) ledger.violation('drain without a timeout reported it not completed', t.rec);
      else if (r.has_error) ledger.see(t.rec, 'rolled-back', r.sqlstate ?? undefined);
      else ledger.see(t.rec, 'committed');
    });
    for (const t of some) this.#untrack(t);
  }

  async #checkStats(): Promise<void> {
    const [s] = await this.#q<{ launched: string; active: number }>('stats',
      'SELECT workers_launched AS launched, workers_active AS active FROM pg_background_stats()');
    if (Number(s?.launched) !== this.launched || s?.active !== 0) {
      this.ctx.ledger.violation(`session ${this.ctx.index}: stats say ${s?.launched} launched, ${s?.active} active; it launched ${this.launched} and tracks none`);
    }
  }
}
