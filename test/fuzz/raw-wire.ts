/**
 * A raw PostgreSQL-protocol client for the wire fuzz tests: a net.Socket that
 * writes whatever it is given, in the pieces it is given, and keeps every byte
 * the server sends; a parser for what the server sent; and a SCRAM-SHA-256
 * login done by hand, so that a test can split each login message too.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import net from 'node:net';
import { serialize } from 'pg-protocol';

export interface BackendMessage {
  type: string;
  body: Buffer;
}

/**
 * The messages in a backend stream. One-byte answers to SSLRequest/GSSENCRequest
 * ('N') come before any typed message (no typed message the server sends before
 * authentication starts with 'N'). `rest` is a trailing message cut short;
 * `malformed` is set when a length field is impossible.
 */
export function parseBackend(bytes: Buffer): { answers: number; messages: BackendMessage[]; rest: number; malformed?: string } {
  let at = 0;
  let answers = 0;
  while (at < bytes.length && bytes[at] === 0x4e && !looksLikeNotice(bytes, at)) {
    answers++;
    at++;
  }
  const messages: BackendMessage[] = [];
  while (at < bytes.length) {
    if (at + 5 > bytes.length) return { answers, messages, rest: bytes.length - at };
    const length = bytes.readUInt32BE(at + 1);
    if (length < 4) return { answers, messages, rest: bytes.length - at, malformed: `length ${length} at byte ${at}` };
    if (at + 1 + length > bytes.length) return { answers, messages, rest: bytes.length - at };
    messages.push({ type: String.fromCharCode(bytes[at]!), body: bytes.subarray(at + 5, at + 1 + length) });
    at += 1 + length;
  }
  return { answers, messages, rest: 0 };
}

/** An 'N' that is a whole NoticeResponse (which the server only sends once logged in) rather than an encryption answer. */
function looksLikeNotice(bytes: Buffer, at: number): boolean {
  if (at + 6 > bytes.length) return false;
  const length = bytes.readUInt32BE(at + 1);
  return length >= 5 && length < 1 << 20 && bytes[at + 5] === 0x53 /* 'S' severity field */;
}

/** The fields of an ErrorResponse or NoticeResponse body, by their one-letter codes. */
export function fieldsOf(body: Buffer): Record<string, string> {
  const fields: Record<string, string> = {};
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const code = String.fromCharCode(body[at]!);
    const end = body.indexOf(0, at + 1);
    if (end < 0) return { ...fields, malformed: 'unterminated field' };
    fields[code] = body.toString('utf8', at + 1, end);
    at = end + 1;
  }
  return fields;
}

export type Closed = 'closed' | 'deadline';

/** A raw client socket on loopback that keeps everything the server sends. */
export class RawClient {
  readonly received: Buffer[] = [];
  receivedBytes = 0;
  closed = false;
  /** The socket failed (ECONNRESET, EPIPE): the server cut it off rather than ended it. */
  error: string | undefined;
  readonly #waiters = new Set<() => void>();

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.received.push(d);
      this.receivedBytes += d.length;
      this.#wake();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error ??= err.code ?? err.message;
    });
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  bytes(): Buffer {
    return Buffer.concat(this.received);
  }

  /** Writes one piece; resolves once the kernel took it (false if the socket is gone). */
  write(piece: Uint8Array): Promise<boolean> {
    if (this.closed || this.socket.destroyed || !this.socket.writable) return Promise.resolve(false);
    return new Promise((resolve) => this.socket.write(piece, (err) => resolve(!err)));
  }

  /** Writes the pieces one after the other, each once the last was taken. */
  async writeAll(pieces: Uint8Array[]): Promise<void> {
    for (const p of pieces) if (!(await this.write(p))) return;
  }

  /** Resolves with true once `done(bytes)` holds, false once the socket closed without it or the deadline passed. */
  until(done: (bytes: Buffer) => boolean, deadlineMs: number): Promise<boolean> {
    if (done(this.bytes())) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const finish = (v: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(v);
      };
      const check = () => {
        if (done(this.bytes())) finish(true);
        else if (this.closed) finish(false);
      };
      const timer = setTimeout(() => finish(false), deadlineMs);
      this.#waiters.add(check);
    });
  }

  /** Half-closes (if still open) and waits for the server to close; 'deadline' if it did not in time. */
  async finish(deadlineMs: number): Promise<Closed> {
    if (!this.closed) this.socket.end();
    await this.until(() => false, deadlineMs);
    if (this.closed) return 'closed';
    this.socket.destroy();
    return 'deadline';
  }
}

/** Cuts `bytes` at the given offsets (taken modulo its length, sorted, repeats dropped). */
export function cut(bytes: Buffer, at: readonly number[]): Buffer[] {
  if (bytes.length === 0) return [];
  const offsets = [...new Set(at.map((n) => n % bytes.length).filter((n) => n > 0))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const o of [...offsets, bytes.length]) {
    pieces.push(bytes.subarray(from, o));
    from = o;
  }
  return pieces;
}

/** Does the stream hold a whole AuthenticationSASL* message of this kind (10 request, 11 continue, 12 final)? */
function authMessage(bytes: Buffer, kind: number): BackendMessage | undefined {
  return parseBackend(bytes).messages.find((m) => m.type === 'R' && m.body.length >= 4 && m.body.readInt32BE(0) === kind);
}

const salted = new Map<string, Buffer>();

export interface Login {
  user: string;
  password: string;
  database: string;
}

/**
 * Logs in with SCRAM-SHA-256, each client message split by `split`; resolves
 * once ReadyForQuery arrived, with the offset in `c.bytes()` where the session's
 * own messages begin. Throws if the server refuses.
 */
export async function login(c: RawClient, who: Login, deadlineMs: number, split: (b: Buffer) => Buffer[] = (b) => [b]): Promise<number> {
  await c.writeAll(split(serialize.startup({ user: who.user, database: who.database })));
  if (!(await c.until((b) => authMessage(b, 10) !== undefined, deadlineMs))) throw new Error(`no SASL request: ${c.bytes().toString('hex')}`);
  const nonce = randomBytes(18).toString('base64');
  const firstBare = `n=*,r=${nonce}`;
  await c.writeAll(split(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', `n,,${firstBare}`)));
  if (!(await c.until((b) => authMessage(b, 11) !== undefined, deadlineMs))) throw new Error('no SASL continue');
  const serverFirst = authMessage(c.bytes(), 11)!.body.subarray(4).toString('utf8');
  const attrs = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
  const key = `${who.password}\0${attrs.s}\0${attrs.i}`;
  let saltedPassword = salted.get(key);
  if (!saltedPassword) {
    saltedPassword = pbkdf2Sync(who.password, Buffer.from(attrs.s!, 'base64'), Number(attrs.i), 32, 'sha256');
    salted.set(key, saltedPassword);
  }
  const clientKey = createHmac('sha256', saltedPassword).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const finalBare = `c=biws,r=${attrs.r}`;
  const signature = createHmac('sha256', storedKey).update(`${firstBare},${serverFirst},${finalBare}`).digest();
  const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!)).toString('base64');
  await c.writeAll(split(serialize.sendSCRAMClientFinalMessage(`${finalBare},p=${proof}`)));
  const ready = (b: Buffer) => parseBackend(b).messages.some((m) => m.type === 'Z');
  if (!(await c.until(ready, deadlineMs))) throw new Error(`login refused: ${JSON.stringify(parseBackend(c.bytes()).messages.filter((m) => m.type === 'E').map((m) => fieldsOf(m.body)))}`);
  const bytes = c.bytes();
  let at = 0;
  for (const m of parseBackend(bytes).messages) {
    at += 5 + m.body.length;
    if (m.type === 'Z') break;
  }
  return at;
}

/** A typed frontend message. */
export function message(type: number, body: Uint8Array): Buffer {
  const header = Buffer.alloc(5);
  header[0] = type;
  header.writeUInt32BE(body.byteLength + 4, 1);
  return Buffer.concat([header, body]);
}

/** A first packet: int32 length, int32 code (protocol version or request code), body. */
export function firstPacket(code: number, body: Uint8Array = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(8 + body.byteLength, 0);
  header.writeUInt32BE(code >>> 0, 4);
  return Buffer.concat([header, body]);
}
