/**
 * Where a SQL API launch's time goes, seen from the caller: the same caller
 * connection runs, back to back, pieces of what pg_background_launch does.
 * Each probe is optional: one that fails (an internal function renamed) is
 * reported as missing rather than stopping the run.
 */
import type pg from 'pg';
import { percentile } from './stats.js';
import { nowMs } from './util.js';

export interface Probe {
  id: string;
  label: string;
  sql: string;
}

export interface ProbeFigure {
  id: string;
  label: string;
  p50Ms: number | null;
  p99Ms: number | null;
  error?: string;
}

export const PROBES: readonly Probe[] = [
  { id: 'select1', label: 'SELECT 1 (the floor)', sql: 'SELECT 1' },
  { id: 'caller-settings', label: "wrapper step: capture the caller's settings", sql: 'SELECT pgbg_private.caller_settings()' },
  { id: 'stats', label: 'one request to pgbg over dblink, no worker (stats)', sql: 'SELECT * FROM pg_background_stats()' },
  { id: 'launch', label: 'launch (detached after, untimed)', sql: "SELECT * FROM pg_background_launch('SELECT 1')" },
];

export async function runProbes(client: pg.Client, jobs: number): Promise<ProbeFigure[]> {
  const figures: ProbeFigure[] = [];
  for (const probe of PROBES) {
    const ms: number[] = [];
    try {
      for (let i = 0; i < jobs; i++) {
        const t0 = nowMs();
        const r = await client.query<{ pid?: number; cookie?: string }>(probe.sql);
        ms.push(nowMs() - t0);
        const h = r.rows[0];
        if (probe.id === 'launch' && h?.pid !== undefined) await client.query('SELECT pg_background_detach($1, $2)', [h.pid, h.cookie]);
      }
      figures.push({ id: probe.id, label: probe.label, p50Ms: percentile(ms, 50), p99Ms: percentile(ms, 99) });
    } catch (err) {
      figures.push({ id: probe.id, label: probe.label, p50Ms: null, p99Ms: null, error: (err as Error).message });
    }
  }
  return figures;
}
