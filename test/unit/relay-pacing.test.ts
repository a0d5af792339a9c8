/**
 * The relay socket's read pacing, over real loopback TCP: a large result's
 * reads rest briefly after short reads, and a socket its owner paused (a full
 * job queue) stays paused across those rests.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { RelaySocket } from '../../src/workers/relay-socket.js';
import { encodeDataRow } from '../../src/protocol/data-row.js';

const ROW = encodeDataRow(['x'.repeat(1000)]);
/** About what a backend sends at once: 8 kB of rows. */
const SEND = Buffer.concat(Array.from({ length: 8 }, () => ROW));
const SENDS = 1500;

interface Observed {
  reads: number;
  rows: number;
  readsWhileHeld: number;
}

/** Sends after which the sender waits GAP_MS: the next read is then one short send. */
const GAP_AFTER = 300;
const GAP_MS = 50;

/**
 * Streams SENDS writes of 8 kB, one per turn of the sender's event loop, to a
 * RelaySocket. `hold` (if given) is called with the socket after each run of rows.
 */
async function stream(sink: boolean, hold?: (socket: RelaySocket, rows: number) => void): Promise<Observed> {
  const server = net.createServer((s) => {
    let sent = 0;
    const next = () => {
      if (s.destroyed) return;
      if (sent === SENDS) return void s.end();
      sent++;
      s.write(SEND, () => (sent === GAP_AFTER ? setTimeout(next, GAP_MS) : setImmediate(next)));
    };
    next();
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const socket = new RelaySocket();
  const seen: Observed = { reads: 0, rows: 0, readsWhileHeld: 0 };
  let held = false;
  const receive = socket.receive.bind(socket);
  socket.receive = (bytes) => {
    seen.reads++;
    if (held) seen.readsWhileHeld++;
    receive(bytes);
  };
  socket.pause = ((pause) =>
    function (this: RelaySocket) {
      held = true;
      return pause.call(this);
    })(socket.pause);
  socket.resume = ((resume) =>
    function (this: RelaySocket) {
      held = false;
      return resume.call(this);
    })(socket.resume);
  if (sink) {
    socket.rowSink = (_run, count) => {
      seen.rows += count;
      hold?.(socket, seen.rows);
    };
  } else {
    socket.on('data', (b: Buffer) => (seen.rows += b.length / ROW.length));
  }
  socket.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  // Bounded: the sender ends after SENDS writes; 20 s at most.
  await Promise.race([
    new Promise((resolve) => socket.on('end', resolve).on('close', resolve)),
    new Promise((_, reject) => setTimeout(() => reject(new Error('stream did not end')), 20_000).unref()),
  ]);
  socket.destroy();
  server.close();
  return seen;
}

describe('relay read pacing', () => {
  test('a large result streamed to a row sink arrives in fewer, larger reads', async () => {
    const plain = await stream(false);
    const paced = await stream(true);
    console.log(`reads for ${SENDS} sends of 8 kB: ${plain.reads} unpaced, ${paced.reads} paced`);
    assert.equal(plain.rows, SENDS * 8);
    assert.equal(paced.rows, SENDS * 8);
    assert.ok(paced.reads < plain.reads, `paced ${paced.reads} reads, unpaced ${plain.reads}`);
  });

  test('a socket paused by its owner stays paused across a rest', async () => {
    let paused = 0;
    const seen = await stream(true, (socket, rows) => {
      // Hold once, on the short read after the sender's gap (past the pacing threshold, so a rest
      // begins as this read ends), for 100 ms: longer than any rest.
      if (paused === 0 && rows > GAP_AFTER * 8) {
        paused++;
        socket.pause();
        setTimeout(() => socket.resume(), 100);
      }
    });
    assert.equal(paused, 1);
    assert.equal(seen.rows, SENDS * 8);
    assert.equal(seen.readsWhileHeld, 0);
  });
});
