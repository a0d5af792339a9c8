/**
 * A fresh `pgbg serve --embedded` and one connected client for a probe
 * script, stopped when the probe ends, fails, is interrupted or has its
 * output cut short (`| head`): a probe must not leave a server behind.
 */
import path from 'node:path';
import pg from 'pg';
import { startServer, type ServerUnderTest } from './server.js';

export async function withProbeServer(name: string, probe: (server: ServerUnderTest, client: pg.Client) => Promise<void>): Promise<void> {
  const root = path.resolve(import.meta.dirname, '..');
  const server = await startServer({ root, dataDir: path.join(root, '.tmp', 'bench', name) });
  process.stdout.on('error', () => undefined);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void server.stop().finally(() => process.exit(1)));
  }
  const client = new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password, database: server.database });
  try {
    await client.connect();
    await probe(server, client);
  } finally {
    await client.end();
    await server.stop();
  }
}
