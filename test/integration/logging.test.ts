import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createLoginRole, createTestDatabase, serverUrl, urlFor, withClient } from '../helpers/db.js';
import { openFixture } from '../helpers/engine.js';
import { until, untilSleeping } from '../helpers/activity.js';

test('the debug log traces each job: launch, start, first row, end, cancel, reset — without cookies or passwords', async () => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const db = await createTestDatabase();
  // The launcher logs in with a password of its own; its workers log in with it too.
  const role = await createLoginRole('pgbg_logged');
  await withClient(serverUrl(), (c) => c.query(`GRANT ALL ON DATABASE ${db.name} TO ${role.name}`));
  const fx = await openFixture(urlFor(db.name, role), { logger: pino({ level: 'debug' }, sink) });
  let closed = false;
  const expected = ['job launched', 'job started', 'first row', 'job ended', 'job cancel', 'worker reset'];
  try {
    const h = await fx.session.launch('SELECT 1 AS x');
    await fx.session.result(h);
    const slow = await fx.session.launch('SELECT pg_sleep(30)');
    await untilSleeping(db.url, slow.pid);
    await fx.session.cancel(slow, { graceMs: 2000 });
    // The first job's reset runs behind its result: bounded wait for every line.
    const messages = () => new Set(lines.map((l) => l.msg));
    await until(() => expected.every((m) => messages().has(m)), `log has ${expected.join(', ')}; got ${[...messages()].join(', ')}`);
    await fx.close();
    closed = true;
    const text = lines.map((l) => JSON.stringify(l)).join('\n');
    assert.ok(!text.includes(String(h.cookie)) && !text.includes(String(slow.cookie)), 'cookies never appear in logs');
    const harness = decodeURIComponent(new URL(serverUrl()).password);
    for (const [what, secret] of [['the launcher\'s password', role.password], ['the harness password', harness]] as const) {
      assert.ok(secret.length >= 8 && !text.includes(secret), `${what} appears in the log`);
      assert.ok(!text.includes(encodeURIComponent(secret)), `${what} appears in the log, URL-encoded`);
    }
    assert.doesNotMatch(text, /"password"|"connectionString"|postgres(ql)?:\/\/[^"\s]*:[^"\s@]*@/i, 'no password field or URL with a password');
  } finally {
    if (!closed) await fx.close();
    await db.drop();
    await withClient(serverUrl(), (c) => c.query(`DROP ROLE ${role.name}`));
  }
});
