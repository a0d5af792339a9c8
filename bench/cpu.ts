/**
 * Where a batch's CPU goes, by process class: the bench's own process (the
 * clients), the caller backends, the pgbg server, its worker backends, its
 * journal and control backends, and PostgreSQL's own processes (WAL writer,
 * checkpointer, ...). Read from /proc, so it needs the embedded PostgreSQL on
 * this machine (which the bench always starts).
 */
import type pg from 'pg';
import { readFile } from 'node:fs/promises';
import { CLOCK_TICKS, cpuMsOf } from './server.js';

export const CPU_CLASSES = ['bench', 'callers', 'server', 'workers', 'journal', 'postgres'] as const;
export type CpuClass = (typeof CPU_CLASSES)[number];
export type CpuByClass = Record<CpuClass, number>;

/** The application_name the bench's caller connections carry. */
export const CALLER_APP_NAME = 'pgbg bench caller';

interface Snapshot {
  byPid: Map<number, { cls: CpuClass; ms: number }>;
  benchMs: number;
  serverMs: number;
}

function classOf(appName: string, backendType: string): CpuClass {
  if (appName === CALLER_APP_NAME) return 'callers';
  if (appName === 'pgbg worker') return 'workers';
  if (appName === 'pgbg journal' || appName === 'pgbg control') return 'journal';
  return backendType === 'client backend' ? 'callers' : 'postgres';
}

export class CpuMeter {
  constructor(
    private readonly admin: pg.Client,
    private readonly serverCpuMs: () => Promise<number>,
  ) {}

  async snapshot(): Promise<Snapshot> {
    const { rows } = await this.admin.query<{ pid: number; app: string; type: string }>(
      `SELECT pid, coalesce(application_name, '') AS app, coalesce(backend_type, '') AS type
         FROM pg_stat_activity WHERE pid <> pg_backend_pid()`,
    );
    const byPid = new Map<number, { cls: CpuClass; ms: number }>();
    for (const r of rows) {
      // A backend can exit between the query and the read: it then counts from the next snapshot.
      const ms = await cpuMsOf(r.pid).catch(() => undefined);
      if (ms !== undefined) byPid.set(r.pid, { cls: classOf(r.app, r.type), ms });
    }
    const u = process.cpuUsage();
    return { byPid, benchMs: (u.user + u.system) / 1000, serverMs: await this.serverCpuMs() };
  }

  /**
   * CPU used between two snapshots. Processes present only in `after` count
   * from zero (they started during the batch); ones gone by then are lost.
   */
  static diff(before: Snapshot, after: Snapshot): CpuByClass {
    const out: CpuByClass = { bench: after.benchMs - before.benchMs, callers: 0, server: after.serverMs - before.serverMs, workers: 0, journal: 0, postgres: 0 };
    for (const [pid, a] of after.byPid) out[a.cls] += a.ms - (before.byPid.get(pid)?.ms ?? 0);
    return out;
  }
}

/**
 * CPU time the whole machine has spent busy (user, nice, system, irq, softirq;
 * all cores), in ms: it also counts processes that start and end between two
 * snapshots, such as the backend of a one-shot dblink connection.
 */
export async function machineBusyMs(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0]!;
  const [user, nice, system, , , irq, softirq] = line.trim().split(/\s+/).slice(1).map(Number);
  return ((user! + nice! + system! + irq! + softirq!) * 1000) / CLOCK_TICKS;
}
