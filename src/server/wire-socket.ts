/**
 * One TCP connection's byte streams, shaped the way pg-gateway wants them
 * (WHATWG readable/writable), with a single output path shared by pg-gateway
 * and our own messages.
 *
 * Why not pg-gateway's `fromNodeSocket()`:
 * - We write messages pg-gateway knows nothing about (ParameterStatus,
 *   BackendKeyData, NoticeResponse at any time, streamed rows). Every byte goes
 *   through `WireOutput`, so ordering is simply the order of `write()` calls:
 *   pg-gateway awaits each of its writes before it calls back into our hooks.
 * - After we send our own FATAL (e.g. 28P01) and end the socket, pg-gateway may
 *   still try to write its own error; `WireOutput` drops writes once ended
 *   instead of raising write-after-end errors that pg-gateway would print with
 *   console.error.
 * - pg-gateway's frame splitter builds a DataView on `chunk.buffer` without the
 *   byteOffset, so every chunk handed to it must be a fresh copy starting at
 *   offset 0 (Node's pooled Buffers are not).
 * - Nor may a chunk hold the end of one message and the start of the next:
 *   pg-gateway's reader decodes a message's strings at their offset in the
 *   message but in the chunk's whole buffer (the startup packet's user, SASL
 *   messages: a second message in a chunk was read from the first's bytes), and
 *   it frames a whole chunk by the first message's kind (an untyped startup
 *   packet or typed messages), so a SASL message sent along with the startup
 *   packet was framed as a 1.8 GB packet and waited for. Each chunk therefore
 *   holds bytes of one message, and every message starts a chunk.
 * - A client reset would make a `Readable.toWeb()` stream error, which
 *   pg-gateway logs via console.error; here the readable just ends.
 */
import type { Socket } from 'node:net';
import type { DuplexStream } from 'pg-gateway';
import type { InboundFramer, InboundRefusal } from './wire-messages.js';

/** Bytes gathered before one socket write: rows of a large result leave in batches, not one syscall each. */
export const BATCH_BYTES = 64 * 1024;
/**
 * How long a partial batch may wait for more bytes while a large result streams.
 * A worker backend sends 8 kB at a time, so without it nearly every read of the
 * worker's socket became a write to the caller (~4,000 per million rows), each
 * waking the caller's backend; with it ~800.
 */
const STREAM_LINGER_MS = 1;

export class WireOutput {
  private ended = false;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;
  private lingerTimer: NodeJS.Timeout | undefined;
  /**
   * Set while a large result streams: a partial batch then leaves after
   * STREAM_LINGER_MS (or once full) instead of at the end of the tick.
   * Clearing it lets the next write leave at the end of its tick again.
   */
  streaming = false;

  constructor(private readonly socket: Socket) {}

  /** True once we ended the socket or it died; later writes are dropped. */
  get closed(): boolean {
    return this.ended || this.socket.destroyed || !this.socket.writable;
  }

  /**
   * Queues bytes: they leave in one write with whatever else is queued in the
   * same tick (a whole small reply is one segment), or at once past 64 kB;
   * while `streaming`, with what comes within STREAM_LINGER_MS.
   * Returns false when the caller should `await drain()` before producing more
   * (the socket's buffer is above its high-water mark).
   */
  write(bytes: Uint8Array): boolean {
    if (this.closed || bytes.byteLength === 0) return true;
    this.pending.push(bytes);
    this.pendingBytes += bytes.byteLength;
    if (this.pendingBytes >= BATCH_BYTES) return this.flush();
    if (this.streaming) {
      this.lingerTimer ??= setTimeout(() => this.flush(), STREAM_LINGER_MS);
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => this.flush());
    }
    return true;
  }

  /** Writes what is queued now; false when the socket wants a drain. */
  flush(): boolean {
    this.flushScheduled = false;
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    if (this.pending.length === 0 || this.closed) {
      this.pending = [];
      this.pendingBytes = 0;
      return this.closed || !this.socket.writableNeedDrain;
    }
    const chunks = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (chunks.length === 1) return this.socket.write(chunks[0]!);
    // Corked writes leave in one writev() without copying them into one buffer first:
    // a large result's rows are ~45 MB per million, and a copy of each was a tenth of the relay's CPU.
    this.socket.cork();
    for (const chunk of chunks) this.socket.write(chunk);
    this.socket.uncork();
    return !this.socket.writableNeedDrain;
  }

  /** Resolves when the socket's buffer drained, or the socket is gone. */
  drain(): Promise<void> {
    this.flush();
    if (this.closed || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** Writes and waits for drain if needed. */
  async send(bytes: Uint8Array): Promise<void> {
    if (!this.write(bytes)) await this.drain();
  }

  /** Sends `last` (if any), then half-closes; the peer's FIN completes the close. */
  end(last?: Uint8Array): void {
    if (this.closed) return;
    this.flush();
    this.ended = true;
    if (last) this.socket.end(last);
    else this.socket.end();
  }

  /** Tears the socket down now (server shutdown, protocol violation). */
  destroy(): void {
    this.ended = true;
    this.socket.destroy();
  }
}

/**
 * The socket as a DuplexStream for pg-gateway; all writes go through `out`.
 * Every chunk passes `framer` first, which checks each message's length before
 * any of its body is buffered; when it refuses the connection, `refused` is
 * told and nothing more is read.
 */
export function socketDuplex(
  socket: Socket,
  out: WireOutput,
  framer: InboundFramer,
  refused: (refusal: InboundRefusal) => void,
): DuplexStream<Uint8Array> {
  let finished = false;
  /** The framer refused the connection: later chunks are not read. */
  let stopped = false;
  const readable = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        const finish = () => {
          if (finished) return;
          finished = true;
          controller.close();
        };
        socket.on('data', (chunk: Buffer) => {
          if (finished || stopped) return;
          const framed = framer.feed(chunk);
          if (framed.refusal) {
            stopped = true;
            socket.pause();
            refused(framed.refusal);
            return;
          }
          // Fresh buffers at offset 0, one message each: see the notes above.
          const { bytes, starts } = framed;
          if (starts.length === 0) {
            if (bytes.byteLength > 0) controller.enqueue(bytes);
          } else {
            let from = 0;
            for (const to of [...starts, bytes.byteLength]) {
              controller.enqueue(bytes.slice(from, to));
              from = to;
            }
          }
          if ((controller.desiredSize ?? 1) <= 0) socket.pause();
        });
        socket.on('end', finish);
        socket.on('close', finish);
        // 'error' is always followed by 'close'; the server logs it.
        socket.on('error', () => undefined);
      },
      pull() {
        if (!stopped) socket.resume();
      },
      cancel() {
        finished = true;
        socket.destroy();
      },
    },
    { highWaterMark: 8 },
  );
  const writable = new WritableStream<Uint8Array>({
    write: (chunk) => out.send(chunk),
    close: () => out.end(),
    abort: () => out.destroy(),
  });
  return { readable, writable };
}
