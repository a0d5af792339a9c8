/**
 * Pure encoders for the backend messages pgbg's wire server sends, and decoders
 * for the few frontend packets it inspects itself.
 *
 * pg-gateway only exports an encoder for ErrorResponse (BackendError) and keeps
 * its BufferWriter private, so the other messages are built with pg-protocol's
 * Writer (the one node-postgres uses): it handles the 'code + int32 length'
 * framing, we only lay out the bodies. Everything here is synchronous and
 * side-effect free so it can be unit tested byte for byte.
 *
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { timingSafeEqual } from 'node:crypto';
import { Writer } from 'pg-protocol/dist/buffer-writer.js';
import { encodeDataRow } from '../protocol/data-row.js';

/** The ErrorResponse/NoticeResponse field a name maps to (protocol-error-fields.html). */
const FIELD_CODES = {
  code: 'C',
  message: 'M',
  detail: 'D',
  hint: 'H',
  position: 'P',
  internalPosition: 'p',
  internalQuery: 'q',
  where: 'W',
  schema: 's',
  table: 't',
  column: 'c',
  dataType: 'd',
  constraint: 'n',
  file: 'F',
  line: 'L',
  routine: 'R',
} as const;

export type MessageFieldName = keyof typeof FIELD_CODES;
export type MessageFields = { severity: string; code: string; message: string } & Partial<
  Record<MessageFieldName, string | undefined>
>;

export interface FieldDescription {
  name: string;
  typeOid: number;
}

const CODE = {
  parameterStatus: 0x53, // S
  backendKeyData: 0x4b, // K
  readyForQuery: 0x5a, // Z
  rowDescription: 0x54, // T
  dataRow: 0x44, // D
  commandComplete: 0x43, // C
  emptyQuery: 0x49, // I
  error: 0x45, // E
  notice: 0x4e, // N
} as const;

export function parameterStatus(name: string, value: string): Buffer {
  return new Writer().addCString(name).addCString(value).flush(CODE.parameterStatus);
}

/** Protocol 3.0 cancel key: a 4-byte secret. */
export function backendKeyData(processId: number, secretKey: Buffer): Buffer {
  if (secretKey.length !== 4) throw new RangeError('protocol 3.0 secret keys are 4 bytes');
  return new Writer().addInt32(processId).add(secretKey).flush(CODE.backendKeyData);
}

export function readyForQuery(status: 'I' | 'T' | 'E' = 'I'): Buffer {
  return new Writer().addString(status).flush(CODE.readyForQuery);
}

/** Text-format columns with no table origin; size -1 and typmod -1 mean "unknown", which libpq accepts. */
export function rowDescription(fields: readonly FieldDescription[]): Buffer {
  const w = new Writer().addInt16(fields.length);
  for (const f of fields) {
    w.addCString(f.name).addInt32(0).addInt16(0).addInt32(f.typeOid).addInt16(-1).addInt32(-1).addInt16(0);
  }
  return w.flush(CODE.rowDescription);
}

export function dataRow(values: readonly (string | null)[]): Buffer {
  return encodeDataRow(values);
}

export function commandComplete(tag: string): Buffer {
  return new Writer().addCString(tag).flush(CODE.commandComplete);
}

export function emptyQueryResponse(): Buffer {
  return new Writer().flush(CODE.emptyQuery);
}

function fieldsBody(kind: number, fields: MessageFields): Buffer {
  // 'S' is the localized severity, 'V' the untranslated one (libpq ≥ 9.6 reads V first).
  const w = new Writer().addString('S').addCString(fields.severity).addString('V').addCString(fields.severity);
  for (const [name, code] of Object.entries(FIELD_CODES) as [MessageFieldName, string][]) {
    const value = fields[name];
    // An embedded NUL would end the field early and desynchronise the client's parser.
    if (value !== undefined) w.addString(code).addCString(value.replaceAll('\0', ''));
  }
  return w.addCString('').flush(kind);
}

export function errorResponse(fields: MessageFields): Buffer {
  return fieldsBody(CODE.error, fields);
}

export function noticeResponse(fields: MessageFields): Buffer {
  return fieldsBody(CODE.notice, fields);
}

// ---------------------------------------------------------------- frontend side

/** Request codes sent in place of a protocol version in the first packet. */
export const REQUEST_CODE = {
  cancel: 80877102, // 1234.5678
  ssl: 80877103, // 1234.5679
  gssenc: 80877104, // 1234.5680
} as const;

export type InitialPacket =
  | { kind: 'startup'; major: number; minor: number }
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; processId: number; secretKey: Buffer }
  | { kind: 'invalid' };

/** Classifies a complete first packet (int32 length, int32 code/version, body). */
export function classifyInitialPacket(packet: Uint8Array): InitialPacket {
  if (packet.byteLength < 8) return { kind: 'invalid' };
  const view = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  if (view.readInt32BE(0) !== packet.byteLength) return { kind: 'invalid' };
  const code = view.readInt32BE(4);
  if (code === REQUEST_CODE.ssl && packet.byteLength === 8) return { kind: 'ssl' };
  if (code === REQUEST_CODE.gssenc && packet.byteLength === 8) return { kind: 'gssenc' };
  // Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256, so accept a range and let the
  // key comparison decide.
  if (code === REQUEST_CODE.cancel && packet.byteLength >= 16 && packet.byteLength <= 12 + 256) {
    return { kind: 'cancel', processId: view.readInt32BE(8), secretKey: Buffer.from(view.subarray(12)) };
  }
  const major = code >>> 16;
  if (major === 3) return { kind: 'startup', major, minor: code & 0xffff };
  return { kind: 'invalid' };
}

/** The SQL text of a complete Query ('Q') message, or undefined if it is malformed. */
export function readQueryText(message: Uint8Array): string | undefined {
  if (message.byteLength < 6 || message[0] !== 0x51) return undefined;
  const view = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  if (view.readInt32BE(1) !== message.byteLength - 1) return undefined;
  const end = view.indexOf(0, 5);
  if (end !== message.byteLength - 1) return undefined;
  return view.toString('utf8', 5, end);
}

/** Constant-time comparison of cancel keys (a length mismatch is not secret). */
export function secretKeysMatch(expected: Buffer, received: Buffer): boolean {
  if (expected.length !== received.length) {
    // Still spend the comparison so a wrong length costs about what a wrong key does.
    timingSafeEqual(expected, expected);
    return false;
  }
  return timingSafeEqual(expected, received);
}

/** The name/value pairs of a complete StartupMessage. */
export function readStartupParameters(packet: Uint8Array): Record<string, string> {
  const view = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  const params: Record<string, string> = {};
  let at = 8;
  while (at < view.length) {
    const keyEnd = view.indexOf(0, at);
    if (keyEnd < 0 || keyEnd === at) break; // the list ends with an empty name
    const valueEnd = view.indexOf(0, keyEnd + 1);
    if (valueEnd < 0) break;
    params[view.toString('utf8', at, keyEnd)] = view.toString('utf8', keyEnd + 1, valueEnd);
    at = valueEnd + 1;
  }
  return params;
}

/**
 * Whether a StartupMessage's parameters are laid out as PostgreSQL requires:
 * NUL-terminated name/value pairs, then an empty name as the packet's last
 * byte. pg-gateway reads them without checking (and throws past the end).
 */
export function startupLayoutValid(packet: Uint8Array): boolean {
  let at = 8;
  while (at < packet.byteLength && packet[at] !== 0) {
    const nameEnd = packet.indexOf(0, at);
    const valueEnd = nameEnd < 0 ? -1 : packet.indexOf(0, nameEnd + 1);
    if (valueEnd < 0) return false;
    at = valueEnd + 1;
  }
  return at === packet.byteLength - 1;
}

/**
 * Whether a SASLInitialResponse ('p': mechanism, int32 length, that many bytes
 * of client-first message, nothing after) is well formed. pg-gateway reads it
 * without checking (and throws on a short one, or on length -1).
 */
export function saslInitialResponseValid(message: Uint8Array): boolean {
  const view = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  const nameEnd = view.indexOf(0, 5);
  if (nameEnd < 0 || nameEnd + 5 > view.length) return false;
  const length = view.readInt32BE(nameEnd + 1);
  return length >= 0 && nameEnd + 5 + length === view.length;
}

/**
 * NegotiateProtocolVersion ('v'): the newest version we speak for the
 * requested major, and the `_pq_.` options we ignored. The docs call the first
 * field a minor version, but PostgreSQL sends (and libpq checks) the whole
 * major<<16|minor number: a bare 0 reads as "downgrade to pre-3.0".
 */
export function negotiateProtocolVersion(major: number, minor: number, unrecognized: readonly string[]): Buffer {
  const w = new Writer().addInt32((major << 16) | minor).addInt32(unrecognized.length);
  for (const name of unrecognized) w.addCString(name);
  return w.flush(0x76);
}

/** PostgreSQL's MAX_STARTUP_PACKET_LENGTH. */
export const MAX_STARTUP_PACKET = 10_000;

/**
 * The frontend message type the inbound framer puts in place of a message it
 * refused for its length: no real frontend message has type 0. Its body is the
 * refused message's type (1 byte) and length field (int32).
 */
export const OVERSIZED_MESSAGE = 0x00;

/** The type and length of a refused message, from the marker that stands in for it. */
export function readOversizedMarker(marker: Uint8Array): { type: number; length: number } {
  const view = Buffer.from(marker.buffer, marker.byteOffset, marker.byteLength);
  return { type: view[5] ?? 0, length: view.readUInt32BE(6) };
}

function oversizedMarker(type: number, length: number): Buffer {
  const marker = Buffer.alloc(10);
  marker[0] = OVERSIZED_MESSAGE;
  marker.writeInt32BE(9, 1);
  marker[5] = type;
  marker.writeUInt32BE(length, 6);
  return marker;
}

/** How long incoming messages may be (their length field, which counts itself but not the type byte). */
export interface InboundLimits {
  /** Before authentication; the startup packet is also held to MAX_STARTUP_PACKET. */
  preAuthBytes: number;
  /** After authentication. */
  requestBytes: number;
}

/** Why the framer stopped a connection. */
export type InboundRefusal =
  /** A first packet no PostgreSQL client sends (an HTTP request, say): hang up without a word. */
  | { kind: 'not-postgres' }
  /** A length field below its own 4 bytes. */
  | { kind: 'invalid-length'; length: number }
  /** A message over `preAuthBytes` before authentication. */
  | { kind: 'too-long'; type: number; length: number; limit: number };

/** What one feed() hands on: its pieces, their total size, and where in them each message after the first begins. */
interface Framed {
  pieces: Buffer[];
  size: number;
  starts: number[];
}

/** Adds the first piece of a message. */
function begin(out: Framed, piece: Buffer): void {
  if (out.size > 0) out.starts.push(out.size);
  out.pieces.push(piece);
  out.size += piece.length;
}

/**
 * Frames what a client sends, by the length fields alone, before anything is
 * buffered: pg-gateway gathers each message whole before it looks at it, so
 * without this a bogus length header (an HTTP request's "GET " reads as
 * ~1.1 GB) made it wait for, and hold, everything a client sent.
 *
 * - First packets (SSLRequest/GSSENCRequest, then the startup or cancel
 *   packet) longer than PostgreSQL's MAX_STARTUP_PACKET are refused at once.
 * - Before authentication, a message longer than `preAuthBytes` ends the
 *   connection (refusal 'too-long').
 * - After authentication, a message longer than `requestBytes` is replaced by
 *   an OVERSIZED_MESSAGE marker and its body is skipped as it arrives: the
 *   session answers the marker (54000) and the stream stays in step. So is a
 *   message of the marker's own type 0, which the session then refuses.
 */
export class InboundFramer {
  /** Bytes handed on to the message parser (markers included). */
  forwarded = 0;
  /** Bytes of refused messages' bodies, skipped. */
  skipped = 0;
  readonly #header = Buffer.alloc(8);
  #headerFill = 0;
  /** Typed messages (after the startup packet) or first packets. */
  #typed = false;
  /** Body bytes still to come for the current message. */
  #remaining = 0;
  #skipping = false;
  /** The current packet is the startup (or cancel) packet: typed messages follow it. */
  #startupPacket = false;
  #refusal: InboundRefusal | undefined;

  constructor(
    private readonly limits: InboundLimits,
    private readonly authenticated: () => boolean,
  ) {}

  /**
   * Feeds one chunk. Returns the bytes to hand to the message parser, in a
   * fresh buffer at offset 0 (see wire-socket.ts), and the offsets in them at
   * which another message begins; or why the connection must end.
   */
  feed(chunk: Uint8Array): { bytes: Uint8Array; starts: number[]; refusal?: undefined } | { refusal: InboundRefusal } {
    if (this.#refusal) return { refusal: this.#refusal };
    const input = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const out: Framed = { pieces: [], size: 0, starts: [] };
    let pos = 0;
    while (pos < input.length) {
      if (this.#remaining > 0) {
        const n = Math.min(this.#remaining, input.length - pos);
        if (this.#skipping) {
          this.skipped += n;
        } else {
          out.pieces.push(input.subarray(pos, pos + n));
          out.size += n;
        }
        pos += n;
        this.#remaining -= n;
        if (this.#remaining === 0) this.#endOfMessage();
        continue;
      }
      const want = this.#typed ? 5 : 8;
      const n = Math.min(want - this.#headerFill, input.length - pos);
      input.copy(this.#header, this.#headerFill, pos, pos + n);
      this.#headerFill += n;
      pos += n;
      const refusal = this.#typed ? this.#typedHeader(out) : this.#firstPacketHeader(out);
      if (refusal) {
        this.#refusal = refusal;
        return { refusal };
      }
    }
    const bytes = new Uint8Array(out.size);
    let at = 0;
    for (const p of out.pieces) {
      bytes.set(p, at);
      at += p.length;
    }
    this.forwarded += out.size;
    return { bytes, starts: out.starts };
  }

  /** Judges a first packet's header as far as it has arrived. */
  #firstPacketHeader(out: Framed): InboundRefusal | undefined {
    if (this.#headerFill < 4) return undefined;
    const length = this.#header.readInt32BE(0);
    if (length < 8 || length > Math.min(MAX_STARTUP_PACKET, this.limits.preAuthBytes)) return { kind: 'not-postgres' };
    if (this.#headerFill < 8) return undefined;
    const code = this.#header.readInt32BE(4);
    begin(out, Buffer.from(this.#header.subarray(0, 8)));
    this.#headerFill = 0;
    const isEncryptionRequest = length === 8 && (code === REQUEST_CODE.ssl || code === REQUEST_CODE.gssenc);
    // Another first packet follows the 'N' of an encryption request; typed messages follow the rest.
    this.#startupPacket = !isEncryptionRequest;
    this.#skipping = false;
    this.#remaining = length - 8;
    if (this.#remaining === 0) this.#endOfMessage();
    return undefined;
  }

  /** Judges a typed message's header once its 5 bytes are in. */
  #typedHeader(out: Framed): InboundRefusal | undefined {
    if (this.#headerFill < 5) return undefined;
    this.#headerFill = 0;
    const type = this.#header[0]!;
    const length = this.#header.readUInt32BE(1);
    if (length < 4) return { kind: 'invalid-length', length };
    const authenticated = this.authenticated();
    const limit = authenticated ? this.limits.requestBytes : this.limits.preAuthBytes;
    // Type 0 is the marker's own: a client's message of that type is skipped like an oversized
    // one and stands for itself (refused as no frontend message), never taken for a marker.
    if (length > limit || (authenticated && type === OVERSIZED_MESSAGE)) {
      if (!authenticated) return { kind: 'too-long', type, length, limit };
      begin(out, oversizedMarker(type, length));
      this.#skipping = true;
    } else {
      begin(out, Buffer.from(this.#header.subarray(0, 5)));
      this.#skipping = false;
    }
    this.#remaining = length - 4;
    if (this.#remaining === 0) this.#endOfMessage();
    return undefined;
  }

  #endOfMessage(): void {
    this.#skipping = false;
    if (this.#startupPacket) {
      this.#startupPacket = false;
      this.#typed = true;
    }
  }
}
