/**
 * Row runs of large results are copied into 64 kB slabs (RunSlabs), so that
 * the memory goes back to the system once they are collected; runs of small
 * results are copied on their own, as before.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RunSlabs, SLAB_BYTES } from '../../src/workers/run-slabs.js';
import { RelaySocket } from '../../src/workers/relay-socket.js';
import { encodeDataRow } from '../../src/protocol/data-row.js';

const filled = (n: number, byte: number) => Buffer.alloc(n, byte);

describe('RunSlabs', () => {
  test('copies are exact and independent of their source; runs fill a slab in order, then a new one', () => {
    const slabs = new RunSlabs();
    const source = filled(20_000, 1);
    const a = slabs.copy(source);
    source.fill(9);
    assert.deepEqual(a, filled(20_000, 1), 'the copy does not follow its source');
    const b = slabs.copy(filled(20_000, 2));
    const c = slabs.copy(filled(20_000, 3));
    assert.equal(a.buffer, b.buffer);
    assert.equal(b.buffer, c.buffer);
    assert.equal(a.buffer.byteLength, SLAB_BYTES);
    assert.deepEqual([a.byteOffset, b.byteOffset, c.byteOffset], [0, 20_000, 40_000]);
    const d = slabs.copy(filled(20_000, 4)); // 80,000 bytes do not fit in 65,536
    assert.notEqual(d.buffer, c.buffer);
    assert.equal(d.byteOffset, 0);
    assert.deepEqual([a[0], b[0], c[19_999], d[0]], [1, 2, 3, 4], 'a new slab leaves the old one intact');
  });

  test('release starts a new slab; a run larger than a slab gets memory of its own', () => {
    const slabs = new RunSlabs();
    const a = slabs.copy(filled(100, 1));
    slabs.release();
    const b = slabs.copy(filled(100, 2));
    assert.notEqual(a.buffer, b.buffer);
    const big = slabs.copy(filled(SLAB_BYTES + 1, 3));
    assert.equal(big.length, SLAB_BYTES + 1);
    assert.notEqual(big.buffer, b.buffer);
    assert.equal(slabs.copy(filled(100, 4)).buffer, b.buffer, 'the big run did not take the slab');
  });
});

describe('RelaySocket', () => {
  test('a result uses slabs only once it has streamed 64 kB; the next job starts in a fresh slab', () => {
    const socket = new RelaySocket();
    try {
      const rows = Buffer.concat(Array.from({ length: 10 }, () => encodeDataRow(['y'.repeat(1_000)])));
      const runs: Buffer[] = [];
      socket.rowSink = (run) => runs.push(run);
      for (let i = 0; i < 8; i++) socket.receive(rows); // ~10 kB each: ~80 kB in all, the last in a slab with room left
      assert.equal(Buffer.concat(runs).equals(Buffer.concat(Array.from({ length: 8 }, () => rows))), true, 'every byte, in order');
      const inSlab = runs.map((r) => r.buffer.byteLength === SLAB_BYTES && r.length < SLAB_BYTES);
      const first = inSlab.indexOf(true);
      assert.equal(first, 7, 'runs go to slabs once 64 kB have streamed');
      assert.ok(inSlab.slice(0, first).every((x) => !x) && inSlab.slice(first).every((x) => x), inSlab.join(','));
      const lastSlab = runs.at(-1)!.buffer;

      const next: Buffer[] = [];
      socket.rowSink = (run) => next.push(run);
      socket.receive(rows);
      assert.notEqual(next[0]!.buffer.byteLength, SLAB_BYTES, 'a new result starts with exact copies');
      for (let i = 0; i < 8; i++) socket.receive(rows);
      assert.equal(next.at(-1)!.buffer.byteLength, SLAB_BYTES);
      assert.notEqual(next.at(-1)!.buffer, lastSlab, 'not in the slab of the result before');
    } finally {
      socket.destroy();
    }
  });
});
