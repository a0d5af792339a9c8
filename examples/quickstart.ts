// Run SQL in the background from a Node app: launch, keep working, read the result.
// Uses DATABASE_URL when set; otherwise starts an embedded PostgreSQL in ./.tmp/quickstart.
import pg from 'pg';
import { Engine } from 'pgbg';
import { startEmbeddedPostgres } from 'pgbg/embedded';

const server = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres({ dataDir: '.tmp/quickstart/data' });
const url = process.env.DATABASE_URL ?? server!.url();

const app = new pg.Client({ connectionString: url });
await app.connect();
const engine = new Engine();
const session = engine.session({ launcher: app }); // workers log in and run as this client

try {
  await app.query('CREATE TABLE IF NOT EXISTS audit (at timestamptz DEFAULT now(), msg text)');

  // Autonomous: the audit row commits even though the caller rolls back.
  await app.query('BEGIN');
  const audit = await session.launch("INSERT INTO audit(msg) VALUES ('attempted refund')");
  await session.wait(audit);
  await app.query('ROLLBACK');
  console.log('audit rows:', (await app.query('SELECT count(*) FROM audit')).rows[0].count);

  // Asynchronous: start a query, read its typed rows later.
  const job = await session.launch('SELECT g AS n, md5(g::text) AS hash FROM generate_series(1, 3) g');
  console.log(`job pid=${job.pid}`, (await session.result(job)).rows);

  // Streaming with backpressure: at most queueSize bytes are buffered.
  let total = 0;
  const big = await session.launch('SELECT g FROM generate_series(1, 100000) g', { queueSize: 65536 });
  for await (const row of session.rows<{ g: number }>(big)) total += row.g;
  console.log('sum:', total);
} finally {
  await engine.close();
  await app.end();
  await server?.stop();
}
