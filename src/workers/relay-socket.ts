/**
 * A worker's plain TCP (or Unix) socket, read through a RowRelay.
 *
 * Every worker socket reads into one process-wide buffer and the relay copies
 * out exactly the bytes it hands on. Node's default allocates 64 kB per read
 * and shrinks it in place; a result kept as views on those reads holds up to
 * twice its bytes, and the shrunk blocks leave holes in the C heap that
 * outlive the burst (see README, "Memory after a burst").
 */
import net from 'node:net';
import { RowRelay, type RowSink } from './row-relay.js';

/**
 * The one buffer every RelaySocket reads into. Safe to share: a read is handed
 * to its socket's callback, which copies out what it keeps, before the next
 * read (of any socket) can land in it.
 */
const READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024);

/**
 * A net.Socket whose DataRows go to `rowSink` while one is set, the rest to
 * the relay's message sink ('data' events until another is set). pause() and
 * resume() are its owner's hold; the relay's rests use the socket's own.
 */
export class RelaySocket extends net.Socket {
  readonly relay: RowRelay;

  constructor() {
    // onread is a documented net.Socket option that @types/node declares only for net.connect.
    // The callback is made before `this` exists; it finds the socket through `reader`.
    const reader: { socket?: RelaySocket } = {};
    const onread = { buffer: READ_BUFFER, callback: (length: number, buffer: Uint8Array) => reader.socket!.receive(buffer.subarray(0, length)) };
    super({ onread } as net.SocketConstructorOpts);
    reader.socket = this;
    const own = { pause: () => super.pause(), resume: () => super.resume(), get destroyed() { return reader.socket!.destroyed; } };
    this.relay = new RowRelay(own, (bytes) => this.emit('data', bytes));
    this.once('close', () => this.relay.stop());
  }

  get rowSink(): RowSink | undefined {
    return this.relay.rowSink;
  }

  set rowSink(sink: RowSink | undefined) {
    this.relay.rowSink = sink;
  }

  override pause(): this {
    this.relay.hold();
    return this;
  }

  override resume(): this {
    this.relay.release();
    return this;
  }

  /** What the socket does with each read (the bytes are not retained). */
  receive(bytes: Uint8Array): void {
    this.relay.receive(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
}
