/**
 * A result of command tags (trailing row-less statements) is buffered like any
 * rows: its bytes count in the job's buffered bytes, which go back to 0 once
 * read and are never negative.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { useFixture } from '../helpers/engine.js';

const STATEMENTS = 300;

describe('command tags in the buffered bytes', () => {
  const ctx = useFixture('CREATE TABLE t (x int)');

  test('many row-less statements: the tags count while buffered, and nothing after reading', async () => {
    const { session } = ctx.fx;
    const sql = Array.from({ length: STATEMENTS }, (_, i) => `INSERT INTO t VALUES (${i})`).join(';\n');
    const h = await session.launch(sql, { queueSize: 1024 * 1024 });
    await session.wait(h);
    const { job } = session.trackedJob(h);
    // Each tag is one DataRow: 'D', length, field count, value length, then 'INSERT 0 1'.
    const tagBytes = STATEMENTS * (1 + 4 + 2 + 4 + Buffer.byteLength('INSERT 0 1'));
    assert.equal(job.bufferedBytes, tagBytes, 'the buffered tags are counted');
    let rows = 0;
    for await (const row of session.rows<{ command: string }>(h)) {
      assert.equal(row.command, 'INSERT 0 1');
      assert.ok(job.bufferedBytes >= 0, `buffered bytes ${job.bufferedBytes} after ${rows} rows`);
      rows++;
    }
    assert.equal(rows, STATEMENTS);
    assert.equal(job.bufferedBytes, 0, 'nothing is left buffered once read');
  });
});
