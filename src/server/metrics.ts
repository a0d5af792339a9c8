/**
 * The server's Prometheus metrics (prom-client), in a registry of its own per
 * server (never prom-client's global one), so that several servers in one
 * process each count their own. Jobs are counted as a JobObserver beside the
 * journal; the rest (running jobs, pool, queued launches, journal lag) is read
 * from the engine and the journal at each scrape. Labels take bounded values
 * only: roles and logins of the served databases, job states, SQLSTATE classes
 * and SQL API ops — never SQL text or a job's label.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Engine } from '../engine/engine.js';
import type { JobObserver } from '../engine/observer.js';
import type { JobSnapshot } from '../engine/types.js';
import type { JournalLag } from '../journal/journal.js';

/** What the scrape-time metrics read. */
export interface MetricSources {
  engine: Engine;
  journalLag: () => JournalLag;
}

/** Plain totals of what the metrics count (the HTTP API's /api/stats). */
export interface MetricTotals {
  jobsStarted: number;
  jobsEnded: Record<string, number>;
  workerErrors: Record<string, number>;
  rowsRelayed: number;
  bytesRelayed: number;
  sqlApiRequests: Record<string, number>;
}

const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 7200];
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10];

export class ServerMetrics implements JobObserver {
  readonly registry = new Registry();
  readonly #totals: MetricTotals = { jobsStarted: 0, jobsEnded: {}, workerErrors: {}, rowsRelayed: 0, bytesRelayed: 0, sqlApiRequests: {} };
  #sources: MetricSources | undefined;
  readonly #started: Counter<'role'>;
  readonly #ended: Counter<'state' | 'role'>;
  readonly #duration: Histogram<'state'>;
  readonly #latency: Histogram;
  readonly #rows: Counter;
  readonly #bytes: Counter;
  readonly #errors: Counter<'class'>;
  readonly #requests: Counter<'op'>;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.#started = new Counter({ name: 'pgbg_jobs_started_total', help: 'Jobs that got a worker, by role', labelNames: ['role'], registers });
    this.#ended = new Counter({ name: 'pgbg_jobs_ended_total', help: 'Jobs ended, by final state (stopped, canceled, error) and role', labelNames: ['state', 'role'], registers });
    this.#duration = new Histogram({
      name: 'pgbg_job_duration_seconds', help: 'From a job getting its worker to its end, by final state', labelNames: ['state'], buckets: DURATION_BUCKETS, registers,
    });
    this.#latency = new Histogram({
      name: 'pgbg_job_launch_latency_seconds', help: 'From a launch to its job getting a worker (the pool queue included)', buckets: LATENCY_BUCKETS, registers,
    });
    this.#rows = new Counter({ name: 'pgbg_rows_relayed_total', help: 'Result rows the workers sent (counted when their job ends)', registers });
    this.#bytes = new Counter({ name: 'pgbg_bytes_relayed_total', help: 'Bytes of result rows (DataRow messages) the workers sent (counted when their job ends)', registers });
    this.#errors = new Counter({ name: 'pgbg_worker_errors_total', help: 'Jobs ended in error, by SQLSTATE class (first two characters)', labelNames: ['class'], registers });
    this.#requests = new Counter({ name: 'pgbg_sql_api_requests_total', help: 'SQL API requests received, by operation', labelNames: ['op'], registers });
    const read = <T>(f: (s: MetricSources) => T): T | undefined => (this.#sources ? f(this.#sources) : undefined);
    new Gauge({
      name: 'pgbg_jobs_running', help: 'Jobs whose workers are running now', registers,
      collect() { this.set(read((s) => s.engine.runningJobs) ?? 0); },
    });
    new Gauge({
      name: 'pgbg_launches_queued', help: 'Launches waiting for a worker connection now', registers,
      collect() { this.set(read((s) => s.engine.pool.queuedLaunches) ?? 0); },
    });
    new Gauge({
      name: 'pgbg_pool_connections', help: 'Worker connections by login (user@database) and state (idle, inUse, opening, resetting)', labelNames: ['login', 'state'], registers,
      collect() {
        this.reset();
        for (const [login, counts] of read((s) => s.engine.pool.connectionsByLogin()) ?? []) {
          for (const [state, n] of Object.entries(counts)) this.set({ login, state }, n);
        }
      },
    });
    new Gauge({
      name: 'pgbg_queued_result_bytes', help: 'Bytes of the logins\' memory budgets held by unread results', registers,
      collect() { this.set(read((s) => s.engine.budgets.total) ?? 0); },
    });
    new Gauge({
      name: 'pgbg_journal_pending_records', help: 'Journal records not written yet', registers,
      collect() { this.set(read((s) => s.journalLag().pending) ?? 0); },
    });
    new Gauge({
      name: 'pgbg_journal_lag_seconds', help: 'How long the oldest unwritten journal record has waited (0 when none waits)', registers,
      collect() {
        const since = read((s) => s.journalLag().pendingSince);
        this.set(since ? (Date.now() - since.getTime()) / 1000 : 0);
      },
    });
    new Gauge({
      name: 'pgbg_journal_seconds_since_last_write', help: 'Time since the journal last wrote successfully (its open counts)', registers,
      collect() {
        const at = read((s) => s.journalLag().lastWriteAt);
        this.set(at ? (Date.now() - at.getTime()) / 1000 : 0);
      },
    });
  }

  /** Where the scrape-time metrics read from (the engine is made after its observer). */
  observe(sources: MetricSources): void {
    this.#sources = sources;
  }

  started(job: JobSnapshot): void {
    this.#totals.jobsStarted++;
    this.#started.inc({ role: job.role });
    if (job.startedAt) this.#latency.observe(Math.max(0, job.startedAt.getTime() - job.launchedAt.getTime()) / 1000);
  }

  ended(job: JobSnapshot): void {
    const t = this.#totals;
    t.jobsEnded[job.state] = (t.jobsEnded[job.state] ?? 0) + 1;
    this.#ended.inc({ state: job.state, role: job.role });
    const from = job.startedAt ?? job.launchedAt;
    if (job.endedAt) this.#duration.observe({ state: job.state }, Math.max(0, job.endedAt.getTime() - from.getTime()) / 1000);
    t.rowsRelayed += job.rowsReceived;
    t.bytesRelayed += job.bytesReceived;
    this.#rows.inc(job.rowsReceived);
    this.#bytes.inc(job.bytesReceived);
    if (job.state === 'error') {
      const sqlClass = (job.errorCode ?? 'XX000').slice(0, 2);
      t.workerErrors[sqlClass] = (t.workerErrors[sqlClass] ?? 0) + 1;
      this.#errors.inc({ class: sqlClass });
    }
  }

  /** A SQL API request arrived (SqlApiHandlerOptions.onRequest). */
  request(op: string): void {
    this.#totals.sqlApiRequests[op] = (this.#totals.sqlApiRequests[op] ?? 0) + 1;
    this.#requests.inc({ op });
  }

  /** A copy of the totals counted so far. */
  totals(): MetricTotals {
    return structuredClone(this.#totals);
  }

  /** The text exposition format, and its content type. */
  async scrape(): Promise<{ text: string; contentType: string }> {
    return { text: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
