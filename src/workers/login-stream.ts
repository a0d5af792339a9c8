/**
 * What node-postgres gets as its "socket" (the documented `stream` option):
 * it dials the worker's own transport where node-postgres asks, carries the
 * login's bytes both ways, and stops at the end of the first ReadyForQuery.
 * From then on node-postgres is given nothing and its writes go nowhere, so
 * the worker speaks the protocol alone on a socket only it reads.
 */
import { Duplex } from 'node:stream';
import { MessageHeader } from './data-row-splitter.js';
import type { DialTarget, Transport } from './worker-transport.js';

const READY_FOR_QUERY = 0x5a; // 'Z'

export class LoginStream extends Duplex {
  #transport: Transport | undefined;
  #over = false;
  readonly #header = new MessageHeader();
  /** Body bytes still to come for the current message. */
  #remaining = 0;

  constructor(private readonly open: (target: DialTarget) => Promise<Transport>) {
    super();
  }

  /** True once the login's ReadyForQuery has gone to node-postgres. */
  get over(): boolean {
    return this.#over;
  }

  /** node-postgres' call (net.Socket's signature): a Unix socket path, or a port and host. */
  connect(portOrPath: number | string, host?: string): this {
    const target: DialTarget = typeof portOrPath === 'string' ? { path: portOrPath } : { port: portOrPath, host: host ?? 'localhost' };
    this.open(target).then(
      (transport) => {
        if (this.destroyed) return void transport.socket.destroy();
        this.#transport = transport;
        this.emit('connect');
      },
      (err: Error) => this.destroy(err),
    );
    return this;
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(enable?: boolean, initialDelay?: number): this {
    this.#transport?.socket.setKeepAlive(enable, initialDelay);
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  /** Bytes from the server: node-postgres gets the ones up to the end of the login. */
  deliver(bytes: Buffer): void {
    if (this.#over) return;
    const n = this.#loginBytes(bytes);
    this.push(n === bytes.length ? bytes : bytes.subarray(0, n));
  }

  override _read(): void {}

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.#over || !this.#transport) return callback();
    this.#transport.socket.write(chunk, (err) => callback(err));
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // node-postgres gives up on a login (timeout, failure): the transport goes with it.
    if (!this.#over) this.#transport?.socket.destroy();
    callback(err);
  }

  /** How many of `chunk`'s bytes belong to the login (frames messages across reads). */
  #loginBytes(chunk: Buffer): number {
    let pos = 0;
    while (pos < chunk.length) {
      if (!this.#header.complete) {
        pos = this.#header.take(chunk, pos);
        if (!this.#header.complete) break;
        this.#remaining = this.#header.bodyLength;
      }
      const n = Math.min(this.#remaining, chunk.length - pos);
      pos += n;
      this.#remaining -= n;
      if (this.#remaining > 0) break;
      this.#header.clear();
      if (this.#header.type === READY_FOR_QUERY) {
        this.#over = true;
        return pos;
      }
    }
    return chunk.length;
  }
}
