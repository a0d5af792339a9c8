/**
 * Server memory under unread results: many jobs with large results and small
 * queues that nobody reads yet, then read, then gone. The pgbg server's RSS
 * should stay near "baseline + sum of queue sizes + fixed overhead" and come
 * back to baseline.
 *
 * Capacity: every unread job holds a worker, so the server runs with
 * `--max-connections 256` (its embedded PostgreSQL gets room for them). The jobs are
 * spread over several login roles, as an application's callers would be.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { ServerUnderTest } from './server.js';
import { spread } from './stats.js';
import { nowMs, resultOfLaunch, sleep } from './util.js';

export interface MemoryConfig {
  roles: number;
  jobsPerRole: number;
  /** Rows of 1000 bytes each job returns. */
  rowsPerJob: number;
  queueBytes: number;
  /** How long to watch the RSS while every job sits unread. */
  holdMs: number;
  /** Pause after the last job ended before the "after" figure; longer than the server's idle timeout, so idle workers have closed. */
  settleMs: number;
  /**
   * The whole cycle is repeated: RSS that stays up after round 1 but not after
   * later rounds is heap sizing, RSS that climbs each round is a leak.
   */
  rounds: number;
  queryTimeoutMs: number;
}

export interface MemoryResult {
  jobs: number;
  bytesPerJob: number;
  queueBytes: number;
  /** Sum of the jobs' queue sizes: what unread results may hold in the server. */
  queueBound: number;
  rssAtReady: number;
  baseline: number;
  peakUnread: number;
  peakReading: number;
  after: number;
  /** Workers blocked writing to pgbg (wait_event ClientWrite) while unread: proof of backpressure. */
  workersBlockedOnWrite: number;
  launchMs: number;
  readMs: number;
  /** Round by round (the figures above are round 1's). */
  rounds: { peakUnread: number; peakReading: number; after: number }[];
  /** Every RSS sample: ms since the phase began, bytes, phase. */
  timeline: [number, number, string][];
}

class RssSampler {
  readonly samples: [number, number, string][] = [];
  #phase = 'warm-up';
  #running = true;
  readonly #done: Promise<void>;
  readonly #t0 = nowMs();

  constructor(
    private readonly rss: () => Promise<number>,
    everyMs: number,
  ) {
    this.#done = (async () => {
      while (this.#running) {
        this.samples.push([Math.round(nowMs() - this.#t0), await this.rss(), this.#phase]);
        await sleep(everyMs);
      }
    })();
  }

  phase(name: string): void {
    this.#phase = name;
  }

  of(phase: string): number[] {
    return this.samples.filter((s) => s[2] === phase).map((s) => s[1]);
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#done;
  }
}

interface Round {
  peakUnread: number;
  peakReading: number;
  after: number;
  blocked: number;
  launchMs: number;
  readMs: number;
}

/** One cycle: launch every job, leave them unread, read them all, let the server settle. */
function jobSqlFor(config: MemoryConfig): string {
  return `SELECT repeat('x', 1000) FROM generate_series(1, ${config.rowsPerJob})`;
}

async function cycle(round: number, clients: pg.Client[], admin: pg.Client, sampler: RssSampler, config: MemoryConfig): Promise<Round> {
  const jobSql = jobSqlFor(config);
  const tag = (phase: string) => `${phase}#${round}`;
  sampler.phase(tag('unread'));
  const t0 = nowMs();
  const handles = await Promise.all(
    clients.map(async (c) => {
      const mine: { pid: number; cookie: string }[] = [];
      for (let i = 0; i < config.jobsPerRole; i++) {
        const r = await c.query<{ pid: number; cookie: string }>('SELECT * FROM pg_background_launch($1, $2)', [jobSql, config.queueBytes]);
        mine.push(r.rows[0]!);
      }
      return mine;
    }),
  );
  const launchMs = nowMs() - t0;
  await sleep(config.holdMs);
  const blocked = await admin.query<{ n: string }>(
    "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event = 'ClientWrite' AND usename LIKE 'pgbg_bench_mem_%'",
  );

  sampler.phase(tag('reading'));
  const t1 = nowMs();
  await Promise.all(
    clients.map(async (c, i) => {
      for (const h of handles[i]!) {
        const r = await c.query<{ n: string }>('SELECT count(*) AS n FROM pg_background_result($1, $2) AS (x text)', [h.pid, h.cookie]);
        if (Number(r.rows[0]!.n) !== config.rowsPerJob) throw new Error(`memory job ${h.pid}: ${r.rows[0]!.n} rows, expected ${config.rowsPerJob}`);
      }
    }),
  );
  const readMs = nowMs() - t1;

  sampler.phase(tag('settling'));
  await sleep(config.settleMs);
  sampler.phase(tag('after'));
  await sleep(1000);
  return {
    peakUnread: Math.max(...sampler.of(tag('unread'))),
    peakReading: Math.max(...sampler.of(tag('reading'))),
    after: spread(sampler.of(tag('after'))).median,
    blocked: Number(blocked.rows[0]!.n),
    launchMs,
    readMs,
  };
}

export async function runMemory(server: ServerUnderTest, admin: pg.Client, config: MemoryConfig, rssAtReady: number): Promise<MemoryResult> {
  const roles = Array.from({ length: config.roles }, (_, i) => ({ name: `pgbg_bench_mem_${i + 1}`, password: randomBytes(12).toString('hex') }));
  for (const r of roles) {
    // A role of an earlier run holds a user mapping (its pgbg secret): revoked before the role goes.
    await admin.query(`DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${r.name}') THEN PERFORM pg_background_revoke_privileges('${r.name}'); END IF; END $$`);
    await admin.query(`DROP ROLE IF EXISTS ${r.name}`);
    await admin.query(`CREATE ROLE ${r.name} LOGIN PASSWORD '${r.password}'`);
    await admin.query('SELECT pg_background_grant_privileges($1)', [r.name]);
  }
  const clients = roles.map(
    (r) => new pg.Client({ host: server.host, port: server.port, database: server.database, user: r.name, password: r.password, query_timeout: config.queryTimeoutMs }),
  );
  const sampler = new RssSampler(() => server.rss(), 50);
  try {
    for (const c of clients) {
      await c.connect();
      await c.query(`SET pg_background.max_workers = ${config.jobsPerRole + 8}`);
      await c.query(`SET pg_background.default_queue_size = '${config.queueBytes / 1024}kB'`);
    }
    // One job per role first: the callers' dblink connections, the roles' first workers and
    // the server's code paths cost memory once; the baseline is taken after that.
    await Promise.all(
      clients.map((c) => c.query(`SELECT count(*) FROM ${resultOfLaunch('$1, $2', 'r(x text)')}`, [jobSqlFor(config), config.queueBytes])),
    );
    await sleep(1000);
    sampler.phase('baseline');
    await sleep(1000);

    const rounds: Round[] = [];
    for (let round = 1; round <= config.rounds; round++) rounds.push(await cycle(round, clients, admin, sampler, config));
    await sampler.stop();

    const first = rounds[0]!;
    return {
      jobs: config.roles * config.jobsPerRole,
      bytesPerJob: config.rowsPerJob * 1000,
      queueBytes: config.queueBytes,
      queueBound: config.roles * config.jobsPerRole * config.queueBytes,
      rssAtReady,
      baseline: spread(sampler.of('baseline')).median,
      peakUnread: first.peakUnread,
      peakReading: first.peakReading,
      after: first.after,
      workersBlockedOnWrite: first.blocked,
      launchMs: first.launchMs,
      readMs: first.readMs,
      rounds: rounds.map(({ peakUnread, peakReading, after }) => ({ peakUnread, peakReading, after })),
      timeline: sampler.samples,
    };
  } finally {
    await sampler.stop();
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}

