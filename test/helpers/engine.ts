/** Engine fixtures: an engine, a launcher client and a session on a test database. */
import pg from 'pg';
import { pino } from 'pino';
import { Engine, type EngineOptions } from '../../src/index.js';
import type { Session } from '../../src/engine/session.js';

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
