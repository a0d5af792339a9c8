import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createTestDatabase } from '../helpers/db.js';
import { openFixture, sleep } from '../helpers/engine.js';

test('the debug log traces each job: launch, start, first row, end, cancel, reset — without cookies', async () => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const db = await createTestDatabase();
  const fx = await openFixture(db.url, { logger: pino({ level: 'debug' }, sink) });
  try {
    const h = await fx.session.launch('SELECT 1 AS x');
    await fx.session.result(h);
    const slow = await fx.session.launch('SELECT pg_sleep(30)');
    await sleep(100);
    await fx.session.cancel(slow, { graceMs: 2000 });
    await sleep(100);
    const messages = new Set(lines.map((l) => l.msg));
    for (const m of ['job launched', 'job started', 'first row', 'job ended', 'job cancel', 'worker reset']) {
      assert.ok(messages.has(m), `log has "${m}"; got ${[...messages].join(', ')}`);
    }
    const text = lines.map((l) => JSON.stringify(l)).join('\n');
    assert.ok(!text.includes(String(h.cookie)) && !text.includes(String(slow.cookie)), 'cookies never appear in logs');
  } finally {
    await fx.close();
    await db.drop();
  }
});
