import { test } from 'node:test';
import { createTestDatabase } from '../helpers/db.js';
import { openFixture } from '../helpers/engine.js';
test('scratch', async () => {
  const db = await createTestDatabase();
  const fx = await openFixture(db.url, { pool: { maxConnectionsPerLogin: 1 } });
  const h1 = await fx.session.launch('SELECT pg_advisory_lock(4243); SELECT 1/0');
  console.log('launched', h1.pid);
  const t = setTimeout(() => { console.log('stuck', fx.session.list()); }, 3000);
  try { await fx.session.result(h1); } catch (e) { console.log('err', (e as Error).message); }
  clearTimeout(t);
  const h2 = await fx.session.launch('SELECT 1');
  console.log(await fx.session.result(h2));
  await fx.close(); await db.drop();
});
