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
import { encodeDataRow } from '../engine/data-row.js';

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
 * Watches the first packets of a connection (SSLRequest/GSSENCRequest, then
 * the startup or cancel packet) and rejects an impossible length at once.
 * pg-gateway would otherwise wait for all the bytes a bogus header announces
 * (an HTTP request's "GET " reads as ~1.1 GB) and hold the socket open.
 */
export class StartupLengthGuard {
  private pending = Buffer.alloc(0);
  private settled = false;

  /** Feed every incoming chunk; false means "not PostgreSQL, hang up". */
  accept(chunk: Uint8Array): boolean {
    if (this.settled) return true;
    this.pending = Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 4) {
      const length = this.pending.readInt32BE(0);
      if (length < 8 || length > MAX_STARTUP_PACKET) return false;
      if (this.pending.length < 8) return true;
      const code = this.pending.readInt32BE(4);
      const isEncryptionRequest = length === 8 && (code === REQUEST_CODE.ssl || code === REQUEST_CODE.gssenc);
      if (!isEncryptionRequest) {
        // The startup (or cancel) packet: what follows is framed normally.
        this.settled = true;
        this.pending = Buffer.alloc(0);
        return true;
      }
      this.pending = this.pending.subarray(8); // another first packet follows the 'N'
    }
    return true;
  }
}
