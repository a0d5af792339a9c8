/**
 * The invariants read from PostgreSQL: effects (soak_effects), the server's
 * journal (pgbg_server.jobs) and its worker backends (pg_stat_activity).
 */
import type pg from 'pg';
import { idOfPreview, type JobRec, type Ledger } from './ledger.js';

/** Worker backends of the pgbg server (over its Unix socket) and of the in-process library (over TCP), and those running a job. */
export async function workerBackends(admin: pg.Client): Promise<{ server: number; library: number; active: number }> {
  const { rows } = await admin.query<{ server: number; library: number; active: number }>(`
    SELECT count(*) FILTER (WHERE client_addr IS NULL)::int AS server, count(*) FILTER (WHERE client_addr IS NOT NULL)::int AS library,
           count(*) FILTER (WHERE application_name LIKE 'pg\\_background:%')::int AS active
      FROM pg_stat_activity WHERE application_name = 'pgbg worker' OR application_name LIKE 'pg\\_background:%'`);
  return rows[0]!;
}

/** Polls `check` every 100 ms until it holds; false when `ms` passed first. */
export async function until(ms: number, check: () => Promise<boolean>): Promise<boolean> {
  for (let i = 0; i <= Math.ceil(ms / 100); i++) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** While the soak runs: no effect twice, and each job whose fate a caller learnt since the last check has its effect 1 or 0 times as that fate says. */
export async function continuousCheck(admin: pg.Client, ledger: Ledger): Promise<void> {
  const dup = await admin.query<{ job_id: number; n: number }>('SELECT job_id, count(*)::int AS n FROM soak_effects GROUP BY job_id HAVING count(*) > 1 LIMIT 10');
  for (const d of dup.rows) ledger.violation(`job ${d.job_id}: its effect is in soak_effects ${d.n} times`, ledger.jobs.get(d.job_id));
  const learnt = ledger.learnt;
  ledger.learnt = [];
  if (learnt.length === 0) return;
  const { rows } = await admin.query<{ job_id: number; n: number }>('SELECT job_id, count(*)::int AS n FROM soak_effects WHERE job_id = ANY($1::int4[]) GROUP BY job_id', [learnt.map((r) => r.spec.id)]);
  const counts = new Map(rows.map((r) => [r.job_id, r.n]));
  for (const rec of learnt) {
    const n = counts.get(rec.spec.id) ?? 0;
    if (rec.seen === 'committed' && n !== 1) ledger.violation(`its caller saw it commit, but its effect is there ${n} times`, rec);
    if (rec.seen === 'rolled-back' && n !== 0) ledger.violation(`its caller saw it fail with ${rec.seenCode}, but its effect committed`, rec);
  }
}

interface JournalRow {
  cookie: string;
  pid: number;
  role: string;
  state: string;
  error_code: string | null;
  sql_preview: string;
}

export interface FinalFigures {
  /** Jobs by final fate, and canceled jobs that committed anyway (the cancel came after the commit). */
  committed: number;
  rolledBack: number;
  canceled: number;
  failed: number;
  cancelAfterCommit: number;
  /** Of those, jobs whose SQL began only after their cancel had been delivered (cancel-lost-before-start). */
  lostCancels: number;
  /** run / run_query calls that overran their timeout (the server canceled them). */
  timedOut: number;
  journalRows: number;
}

/** After the drain: every job against its effect and (SQL jobs) its journal row. */
export async function finalCheck(admin: pg.Client, ledger: Ledger): Promise<FinalFigures> {
  const sqlJobs = [...ledger.jobs.values()].filter((r) => r.via !== 'library' && !r.launchFailed);
  // The journal writes behind the jobs (batches every 50 ms): wait for every job's final record.
  await until(15_000, async () => {
    const { rows } = await admin.query<{ ended: number; running: number }>(
      "SELECT count(*) FILTER (WHERE state <> 'running')::int AS ended, count(*) FILTER (WHERE state = 'running')::int AS running FROM pgbg_server.jobs");
    return rows[0]!.running === 0 && rows[0]!.ended >= sqlJobs.length;
  });
  const journal = (await admin.query<JournalRow>('SELECT cookie::text AS cookie, pid, role, state, error_code, sql_preview FROM pgbg_server.jobs')).rows;
  const byId = new Map<number, JournalRow[]>();
  for (const j of journal) {
    const id = idOfPreview(j.sql_preview);
    if (id === undefined || !ledger.jobs.has(id)) {
      ledger.violation(`the journal has a job nobody launched: (${j.pid},${j.cookie}) ${j.state} ${j.sql_preview.slice(0, 60)}`);
      continue;
    }
    byId.set(id, [...(byId.get(id) ?? []), j]);
  }
  // With the moment (the worker's clock_timestamp()) each job's first statement ran.
  const effects = new Map((await admin.query<{ job_id: number; n: number; at: string }>(
    'SELECT job_id, count(*)::int AS n, (extract(epoch FROM min(at)) * 1000000)::int8::text AS at FROM soak_effects GROUP BY job_id',
  )).rows.map((r) => [r.job_id, { n: r.n, at: BigInt(r.at) }]));
  for (const id of effects.keys()) if (!ledger.jobs.has(id)) ledger.violation(`soak_effects has job ${id}, which nobody launched`);

  const figures: FinalFigures = { committed: 0, rolledBack: 0, canceled: 0, failed: 0, cancelAfterCommit: 0, lostCancels: 0, timedOut: 0, journalRows: journal.length };
  for (const rec of ledger.jobs.values()) {
    const n = effects.get(rec.spec.id)?.n ?? 0;
    if (n > 1) ledger.violation(`its effect committed ${n} times`, rec);
    if (rec.launchFailed) {
      if (n !== 0) ledger.violation('its launch failed, yet its effect committed', rec);
      continue;
    }
    const state = rec.via === 'library' ? rec.engineState : journalState(ledger, rec, byId.get(rec.spec.id));
    if (state === undefined) continue;
    const committed = state === 'stopped';
    if (committed) figures.committed++;
    else figures.rolledBack++;
    if (state === 'canceled') figures.canceled++;
    if (state === 'error') figures.failed++;
    if (committed && rec.cancelRequested) figures.cancelAfterCommit++;
    const began = effects.get(rec.spec.id)?.at;
    if (committed && rec.cancelDoneAt !== undefined && began !== undefined && began > rec.cancelDoneAt) {
      figures.lostCancels++;
      ledger.issue('cancel-lost-before-start', `its SQL began ${Number(began - rec.cancelDoneAt) / 1000} ms after its cancel had been delivered, and it committed`, rec);
    }
    if (rec.timedOut) figures.timedOut++;
    if (committed && n !== 1) ledger.violation(`it ended ${state} (committed), but its effect is there ${n} times`, rec);
    if (!committed && n !== 0) ledger.violation(`it ended ${state}, yet its effect committed`, rec);
    if (!committed && !rec.cancelRequested && !rec.spec.fails) ledger.violation(`never canceled and its SQL cannot fail, yet it ended ${state}`, rec);
    if (committed && rec.spec.fails) ledger.violation('it ended stopped, yet its last statement divides by zero', rec);
  }
  return figures;
}

/** The journal's final state of an SQL job, checked against what its caller saw. */
function journalState(ledger: Ledger, rec: JobRec, rows: JournalRow[] | undefined): string | undefined {
  if (!rows || rows.length === 0) {
    ledger.violation('no journal record', rec);
    return undefined;
  }
  if (rows.length > 1) ledger.violation(`${rows.length} journal records: ${rows.map((r) => `(${r.pid},${r.cookie}) ${r.state}`).join(', ')}`, rec);
  const j = rows[0]!;
  if (rec.cookie !== undefined && (j.cookie !== rec.cookie || j.pid !== rec.pid)) ledger.violation(`the journal records it as (${j.pid},${j.cookie})`, rec);
  if (j.role !== rec.role) ledger.violation(`the journal says it ran as ${j.role}`, rec);
  if (j.state === 'running' || j.state === 'lost') {
    ledger.violation(`the journal still says ${j.state} after the drain`, rec);
    return undefined;
  }
  if (j.state === 'canceled' && !rec.cancelRequested) ledger.violation('the journal says canceled; nobody canceled it', rec);
  if (j.state === 'error' && j.error_code !== '22012') ledger.violation(`the journal says error ${j.error_code}`, rec);
  if (rec.seen === 'committed' && j.state !== 'stopped') ledger.violation(`its caller saw it commit, the journal says ${j.state} ${j.error_code ?? ''}`, rec);
  if (rec.seen === 'rolled-back') {
    const expect = rec.seenCode === '57014' ? 'canceled' : 'error';
    if (j.state !== expect) ledger.violation(`its caller saw ${rec.seenCode}, the journal says ${j.state} ${j.error_code ?? ''}`, rec);
  }
  return j.state;
}
