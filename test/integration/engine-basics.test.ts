import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { useFixture } from '../helpers/engine.js';

describe('launch and result', () => {
  const ctx = useFixture('CREATE TABLE log (id serial PRIMARY KEY, msg text)');

  test('a handle carries the real backend pid and a positive 63-bit cookie', async () => {
    const h = await ctx.fx.session.launch('SELECT pg_backend_pid() AS pid');
    const r = await ctx.fx.session.result<{ pid: number }>(h);
    assert.equal(r.rows[0]?.pid, h.pid);
    assert.ok(h.cookie > 0n && h.cookie < 2n ** 63n);
  });

  test('typed rows with field metadata', async () => {
    const h = await ctx.fx.session.launch("SELECT 42::int4 AS n, 'x'::text AS t, true AS b, 1.5::float8 AS f");
    const r = await ctx.fx.session.result(h);
    assert.deepEqual(r.rows, [{ n: 42, t: 'x', b: true, f: 1.5 }]);
    assert.deepEqual(r.fields.map((f) => [f.name, f.dataTypeID]), [['n', 23], ['t', 25], ['b', 16], ['f', 701]]);
  });

  test('only the last statement\'s rows, and it sees the earlier writes', async () => {
    const h = await ctx.fx.session.launch("INSERT INTO log(msg) VALUES ('a'); SELECT count(*)::int AS n FROM log WHERE msg = 'a'");
    const r = await ctx.fx.session.result(h);
    assert.deepEqual(r.rows, [{ n: 1 }]);
  });

  test('row-less statements yield their command tags', async () => {
    const h = await ctx.fx.session.launch("INSERT INTO log(msg) VALUES ('b'); INSERT INTO log(msg) VALUES ('c'), ('d')");
    const r = await ctx.fx.session.result(h);
    assert.deepEqual(r.rows, [{ command: 'INSERT 0 1' }, { command: 'INSERT 0 2' }]);
    assert.equal(r.fields[0]?.name, 'command');
  });

  test('rows stream through an async iterator', async () => {
    const h = await ctx.fx.session.launch('SELECT g AS n FROM generate_series(1, 1000) g');
    let expected = 1;
    for await (const row of ctx.fx.session.rows<{ n: number }>(h)) assert.equal(row.n, expected++);
    assert.equal(expected, 1001);
  });

  test('results are consumable once', async () => {
    const h = await ctx.fx.session.launch('SELECT 1');
    await ctx.fx.session.result(h);
    await assert.rejects(ctx.fx.session.result(h), { code: '42704', message: `results for PID ${h.pid} have already been consumed` });
  });

  test('a cookie that does not match is refused with 55000', async () => {
    const h = await ctx.fx.session.launch('SELECT 1');
    await assert.rejects(ctx.fx.session.result({ pid: h.pid, cookie: h.cookie ^ 1n }), { code: '55000' });
    await ctx.fx.session.result(h);
  });

  test('an unknown pid is 42704', async () => {
    await assert.rejects(ctx.fx.session.result({ pid: 1 }), { code: '42704', message: 'PID 1 is not attached to this session' });
  });
});
