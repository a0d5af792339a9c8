/**
 * What tests leave behind, found after they ran: sessions still connected to
 * a test database when it is dropped (recorded here, reported by test/run.ts),
 * sessions left on the harness server, and processes a test started (they
 * carry the run's marker in their environment) that are still running.
 */
import { appendFileSync, readdirSync, readFileSync } from 'node:fs';
import type pg from 'pg';

/** The environment variable test/run.ts gives the tests (and so every process they start). */
export const RUN_MARKER = 'PGBG_TEST_RUN';
/** The file where sessions found at a database's drop are recorded for the runner's report. */
export const LEAKS_FILE = 'PGBG_TEST_LEAKS';

export interface Session {
  pid: number;
  datname: string | null;
  usename: string | null;
  application_name: string;
  state: string | null;
  query: string;
}

/** Hides the password of a connection URL or conninfo in text meant for a report. */
export function maskSecrets(text: string): string {
  return text.replace(/(:\/\/[^:/@\s]*:)[^@\s]*@/g, '$1***@').replace(/(password=)\S+/gi, '$1***');
}

export function describeSession(s: Session): string {
  return `pid ${s.pid} db ${s.datname ?? '-'} user ${s.usename ?? '-'} app "${s.application_name}" ${s.state ?? '-'}: ${maskSecrets(s.query.replace(/\s+/g, ' ').slice(0, 100))}`;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Client sessions matching `where` (SQL over pg_stat_activity; $1 is free for `param`), waited
 * for (bounded by `timeoutMs`) to end: a client that just closed leaves its backend a moment longer.
 */
export async function lingeringSessions(c: pg.Client, where: string, param: unknown, timeoutMs = 5000): Promise<Session[]> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    const { rows } = await c.query<Session>(
      `SELECT pid, datname, usename, application_name, state, query FROM pg_catalog.pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_catalog.pg_backend_pid() AND (${where}) ORDER BY pid`,
      param === undefined ? [] : [param],
    );
    if (rows.length === 0 || Date.now() > deadline || i > timeoutMs / 50) return rows;
    await pause(50);
  }
}

/** Records sessions a test left connected to its database (the drop then ends them). */
export function recordLeakedSessions(database: string, sessions: Session[]): void {
  const lines = sessions.map((s) => `sessions left in ${database}: ${describeSession(s)}`);
  process.stderr.write(lines.map((l) => `LEAK: ${l}\n`).join(''));
  const file = process.env[LEAKS_FILE];
  if (file) appendFileSync(file, lines.join('\n') + '\n');
}

export interface MarkedProcess {
  pid: number;
  ppid: number;
  command: string;
}

/** Processes whose environment holds `NAME=value` (Linux /proc; those we may not read are not seen). */
export function processesWith(name: string, value: string): MarkedProcess[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const wanted = `${name}=${value}`;
  const found: MarkedProcess[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (!readFileSync(`/proc/${entry}/environ`, 'latin1').split('\0').includes(wanted)) continue;
      const command = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
      // The fields after the command name in parentheses: state, then ppid.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      found.push({ pid: Number(entry), ppid, command });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}
