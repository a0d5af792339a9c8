/** Engine fixtures: an engine, a launcher client and a session on a test database. */
import { after, before } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { Engine, type EngineOptions } from '../../src/index.js';
import type { Session } from '../../src/engine/session.js';
import { createTestDatabase } from './db.js';

type TestDatabase = Awaited<ReturnType<typeof createTestDatabase>>;

export interface Fixture {
  engine: Engine;
  launcher: pg.Client;
  session: Session;
  close(): Promise<void>;
}

export function testLogger() {
  return pino({ level: process.env.PGBG_TEST_LOG ?? 'silent' });
}

export async function openFixture(url: string, options: EngineOptions = {}): Promise<Fixture> {
  const engine = new Engine({ logger: testLogger(), ...options });
  const launcher = new pg.Client({ connectionString: url });
  await launcher.connect();
  let session: Session;
  try {
    session = engine.session({ launcher });
  } catch (err) {
    await launcher.end();
    await engine.close();
    throw err;
  }
  return {
    engine,
    launcher,
    session,
    async close() {
      session.close();
      await engine.close({ graceMs: 5000 });
      await launcher.end();
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Registers before/after hooks that give the enclosing describe() a fresh
 * database and a fixture on it; `setup` runs once on the launcher.
 */
export function useFixture(setupSql?: string, options: EngineOptions = {}): { readonly fx: Fixture; readonly db: TestDatabase } {
  let fx: Fixture | undefined;
  let db: TestDatabase | undefined;
  before(async () => {
    db = await createTestDatabase();
    fx = await openFixture(db.url, options);
    if (setupSql) await fx.launcher.query(setupSql);
  });
  after(async () => {
    await fx?.close();
    await db?.drop();
  });
  return {
    get fx() {
      if (!fx) throw new Error('fixture used outside a test');
      return fx;
    },
    get db() {
      if (!db) throw new Error('fixture used outside a test');
      return db;
    },
  };
}
