import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import pg from 'pg';
import { decodeDataRow, splitRowRun } from '../../src/protocol/data-row.js';
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

  test('another session\'s handle is 42704 for every operation; its own session still reads it', async () => {
    const other = new pg.Client({ connectionString: ctx.db.url });
    await other.connect();
    const s2 = ctx.fx.engine.session({ launcher: other });
    try {
      const h = await ctx.fx.session.launch('SELECT 7 AS x');
      const notAttached = { code: '42704', message: `PID ${h.pid} is not attached to this session` };
      await assert.rejects(s2.result(h), notAttached);
      await assert.rejects(s2.wait(h), notAttached);
      await assert.rejects(s2.waitTimeout(h, 10), notAttached);
      await assert.rejects(s2.cancel(h), notAttached);
      assert.throws(() => s2.detach(h), notAttached);
      assert.throws(() => s2.progress(h), notAttached);
      assert.deepEqual(s2.list(), []);
      assert.deepEqual((await ctx.fx.session.result(h)).rows, [{ x: 7 }]);
    } finally {
      s2.close();
      await other.end();
    }
  });

  test('rawResult: field metadata, then text values (NULL as null), their batches, or the DataRow messages; read once', async () => {
    const sql = "SELECT g AS n, 'r' || g AS t, CASE WHEN g = 2 THEN NULL ELSE g * 1.5 END::float8 AS f FROM generate_series(1, 3) g";
    const expected = [['1', 'r1', '1.5'], ['2', 'r2', null], ['3', 'r3', '4.5']];
    const viaRows = await ctx.fx.session.launch(sql);
    const raw = await ctx.fx.session.rawResult(viaRows);
    assert.deepEqual(raw.fields.map((f) => [f.name, f.dataTypeID]), [['n', 23], ['t', 25], ['f', 701]]);
    const rows = [];
    for await (const row of raw.rows) rows.push(row);
    assert.deepEqual(rows, expected);
    assert.deepEqual(raw.commandTags(), ['SELECT 3']);
    await assert.rejects(ctx.fx.session.rawResult(viaRows), { code: '42704', message: `results for PID ${viaRows.pid} have already been consumed` });

    const viaBatches = await ctx.fx.session.rawResult(await ctx.fx.session.launch(sql));
    const batched = [];
    for await (const batch of viaBatches.batches) batched.push(...batch);
    assert.deepEqual(batched, expected);

    const viaWire = await ctx.fx.session.rawResult(await ctx.fx.session.launch(sql));
    const messages = [];
    for await (const runs of viaWire.dataRows) for (const run of runs) messages.push(...splitRowRun(run));
    assert.ok(messages.every((m) => m[0] === 0x44), 'DataRow messages (type D)');
    assert.deepEqual(messages.map(decodeDataRow), expected);
  });
});
