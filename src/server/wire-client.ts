/**
 * WireClient = one client connection to the wire endpoint, the server's end of
 * it (socket, login, query loop); its handler sees it as a WireConnection.
 *
 * pg-gateway drives the connection: it frames messages, answers SSLRequest
 * with 'N', parses the StartupMessage and runs the SCRAM-SHA-256 exchange.
 * What it does not do for a libpq client, we do from its `onMessage` /
 * `onAuthenticated` hooks (each gap is marked "pg-gateway:" below):
 * GSSENCRequest, CancelRequest, protocol-version negotiation, ParameterStatus
 * and BackendKeyData, 28P01 on a failed login, and every message after
 * authentication (its own post-auth handling answers everything but Terminate
 * with a 'not implemented' error).
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { closeSignal, PostgresConnection, ServerStep, type ConnectionState, type MessageResponse, type ScramSha256Data } from 'pg-gateway';
import type { Logger } from 'pino';
import { PgbgError, SqlState } from '../protocol/errors.js';
import type { WireConnection, WireHandler } from './wire-types.js';
import { scramAuthOptions, type WireAuthenticate } from './wire-auth.js';
import {
  backendKeyData,
  classifyInitialPacket,
  errorResponse,
  InboundFramer,
  negotiateProtocolVersion,
  noticeResponse,
  parameterStatus,
  OVERSIZED_MESSAGE,
  readOversizedMarker,
  readQueryText,
  readStartupParameters,
  readyForQuery,
  saslInitialResponseValid,
  startupLayoutValid,
  type InboundLimits,
  type InboundRefusal,
  type MessageFields,
} from './wire-messages.js';
import { runSimpleQuery } from './wire-query.js';
import { socketDuplex, WireOutput } from './wire-socket.js';

/** What the server shares with its clients. */
export interface WireClientServices {
  handler: WireHandler;
  authenticate: WireAuthenticate;
  mockVerifier: () => Promise<ScramSha256Data>;
  logger: Logger;
  serverVersion: string;
  answerSet: boolean;
  /** A client that has not logged in after this long is cut off. */
  authTimeoutMs: number;
  /** How long incoming messages may be, before and after authentication. */
  limits: InboundLimits;
  /** Makes the client reachable by CancelRequest (after authentication). */
  register(client: WireClient): void;
  unregister(client: WireClient): void;
  /** A CancelRequest arrived on some connection. */
  cancel(processId: number, secretKey: Buffer): void;
}

/**
 * A zero-length response tells pg-gateway "handled, nothing to add": returning
 * undefined would let it process the message itself. It writes the empty chunk,
 * which WireOutput ignores.
 */
const HANDLED = new Uint8Array(0);

/**
 * What onMessage returns once the connection is over: pg-gateway's close
 * signal, so that it stops reading what the client still sends. It went on
 * framing it: after a CancelRequest (or a startup packet it did not take) as
 * first packets, and a first packet of length 0 made it loop forever, which
 * froze the whole process.
 */
const CLOSE = [closeSignal] as unknown as MessageResponse;

const MSG = { query: 0x51, terminate: 0x58, sync: 0x53, flush: 0x48, functionCall: 0x46, password: 0x70 } as const;
/** Parse, Bind, Describe, Execute, Close: the extended query protocol. */
const EXTENDED = new Set([0x50, 0x42, 0x44, 0x45, 0x43]);
/** CopyData, CopyDone, CopyFail: PostgreSQL ignores them outside COPY. */
const COPY = new Set([0x64, 0x63, 0x66]);

/** How long a client we cut off may read our last words before its socket is destroyed. */
const CUT_OFF_GRACE_MS = 1000;

const fatal = (code: string, message: string): Uint8Array => errorResponse({ severity: 'FATAL', code, message });

export class WireClient {
  /** Also the BackendKeyData process id. */
  readonly id: number;
  readonly secretKey = randomBytes(4);
  readonly out: WireOutput;
  /** Frames what the client sends, checking lengths before anything is buffered. */
  readonly framer: InboundFramer;
  /** Resolves once the socket closed and onClose (if due) ran. */
  readonly closed: Promise<void>;
  private conn: WireConnection | undefined;
  private current: { controller: AbortController; done: Promise<void> } | undefined;
  private skipUntilSync = false;
  /** Password messages received while logging in (SASLInitialResponse, then SASLResponse). */
  private passwordMessages = 0;
  private finished: Promise<void> | undefined;
  private readonly logger: Logger;

  constructor(
    private readonly socket: Socket,
    id: number,
    private readonly services: WireClientServices,
  ) {
    this.id = id;
    this.out = new WireOutput(socket);
    this.framer = new InboundFramer(services.limits, () => this.conn !== undefined);
    this.logger = services.logger.child({ conn: id, remote: remoteOf(socket) });
    this.closed = new Promise((resolve) => socket.once('close', () => void this.finish().then(resolve)));
    socket.on('error', (err) => this.logger.debug({ err }, 'wire socket error'));
    const authTimer = setTimeout(() => {
      if (this.conn) return;
      this.logger.info('wire authentication timed out');
      this.out.end(fatal('08006', 'authentication timed out'));
      setTimeout(() => this.out.destroy(), CUT_OFF_GRACE_MS).unref();
    }, services.authTimeoutMs).unref();
    socket.once('close', () => clearTimeout(authTimer));
  }

  start(): void {
    new PostgresConnection(socketDuplex(this.socket, this.out, this.framer, (r) => this.refused(r)), {
      auth: scramAuthOptions(this.services.authenticate, this.services.mockVerifier, {
        onFailure: (user) => {
          this.logger.info({ user }, 'wire authentication failed');
          // pg-gateway would answer 28000; PostgreSQL (and our contract) says 28P01.
          // Its own error is then dropped by WireOutput, which is already ended.
          this.out.end(fatal('28P01', `password authentication failed for user "${user}"`));
        },
        onLookupError: (user, err) => this.logger.error({ user, err: safeError(err) }, 'wire authenticate() failed'),
      }),
      onAuthenticated: (state) => this.onAuthenticated(state),
      onMessage: (data, state) => this.onMessage(data, state),
    });
  }

  /** The framer stopped reading this connection: say why (if it is PostgreSQL at all) and close. */
  private refused(refusal: InboundRefusal): void {
    if (refusal.kind === 'not-postgres') {
      // Like PostgreSQL: no reply to something that is not our protocol.
      this.out.destroy();
      return;
    }
    if (refusal.kind === 'too-long') {
      this.logger.info({ length: refusal.length, limit: refusal.limit }, 'wire message too long before authentication');
      this.out.end(
        errorResponse({
          severity: 'FATAL',
          code: '08P01',
          message: 'invalid message length',
          detail: `A message of ${refusal.length} bytes arrived before authentication; the limit is ${refusal.limit} bytes.`,
        }),
      );
    } else {
      this.logger.info({ length: refusal.length }, 'wire message with an invalid length');
      this.out.end(fatal('08P01', 'invalid message length'));
    }
    // Nothing more is read; a client still sending fills its socket buffers, then is cut off.
    setTimeout(() => this.out.destroy(), CUT_OFF_GRACE_MS).unref();
  }

  /** Bytes read from the client so far. */
  get bytesRead(): number {
    return this.socket.bytesRead;
  }

  /** Aborts the running query, if any (CancelRequest). */
  cancel(): void {
    this.current?.controller.abort(new PgbgError(SqlState.queryCanceled, 'canceling statement due to user request'));
  }

  /** Server shutdown: tell the client why, then close. */
  shutdown(graceMs: number): void {
    this.current?.controller.abort(new PgbgError('57P01', 'terminating connection due to administrator command'));
    if (this.conn) this.out.end(fatal('57P01', 'terminating connection due to administrator command'));
    else this.out.destroy();
    setTimeout(() => this.out.destroy(), graceMs).unref();
  }

  private onAuthenticated(state: ConnectionState): void {
    const params = state.clientParams ?? { user: '' };
    const user = params.user;
    const database = params.database || user;
    this.conn = {
      id: this.id,
      user,
      database,
      remoteAddress: this.socket.remoteAddress ?? '',
      state: new Map(),
      notice: (fields) => this.notice(fields),
    };
    this.services.register(this);
    // pg-gateway sends only server_version; libpq wants these before ReadyForQuery,
    // and dblink_cancel_query needs BackendKeyData. pg-gateway awaits this hook
    // after writing AuthenticationOk and before writing ReadyForQuery.
    const status: [string, string][] = [
      ['server_version', this.services.serverVersion],
      ['server_encoding', 'UTF8'],
      ['client_encoding', 'UTF8'],
      ['DateStyle', 'ISO, MDY'],
      ['IntervalStyle', 'postgres'],
      ['TimeZone', 'UTC'],
      ['integer_datetimes', 'on'],
      ['standard_conforming_strings', 'on'],
      ['application_name', params.application_name ?? ''],
      ['is_superuser', 'off'],
      ['session_authorization', user],
      ['default_transaction_read_only', 'off'],
      ['in_hot_standby', 'off'],
    ];
    for (const [name, value] of status) this.out.write(parameterStatus(name, value));
    this.out.write(backendKeyData(this.id, this.secretKey));
    this.logger.info({ user, database }, 'wire connection authenticated');
  }

  private notice(fields: { severity?: string; code?: string; message: string } & Partial<Record<string, string>>): void {
    const { severity = 'NOTICE', code = '00000', message, ...rest } = fields;
    this.out.write(noticeResponse({ ...rest, severity, code, message } as MessageFields));
  }

  private async onMessage(data: Uint8Array, state: ConnectionState): Promise<MessageResponse> {
    if (this.out.closed) return CLOSE; // we already said goodbye; ignore trailing input
    switch (state.step) {
      case ServerStep.AwaitingInitialMessage:
        return this.onInitialPacket(data);
      case ServerStep.PerformingAuthentication:
        // pg-gateway throws (and console.errors) on anything but a password message,
        // e.g. a client that gives up with Terminate.
        if (data[0] !== MSG.password) {
          return this.hangUp(fatal('08P01', 'expected password response'));
        }
        // The first is the SASLInitialResponse, whose layout pg-gateway takes on trust.
        if (this.passwordMessages++ === 0 && !saslInitialResponseValid(data)) {
          return this.hangUp(fatal('08P01', 'malformed SASL message'));
        }
        return undefined;
      default:
        return this.onRegularMessage(data);
    }
  }

  /** Ends the connection (after `last`, if any) and tells pg-gateway to stop. */
  private hangUp(last?: Uint8Array): MessageResponse {
    this.out.end(last);
    // Nothing more is read; a client still sending fills its socket buffers, then is cut off.
    setTimeout(() => this.out.destroy(), CUT_OFF_GRACE_MS).unref();
    return CLOSE;
  }

  private onInitialPacket(data: Uint8Array): MessageResponse {
    const packet = classifyInitialPacket(data);
    switch (packet.kind) {
      case 'ssl':
        return undefined; // pg-gateway answers 'N' since it has no TLS options
      case 'gssenc':
        // pg-gateway: only knows SSLRequest. 'N' = no GSS encryption; libpq continues.
        return Buffer.from('N');
      case 'cancel':
        // pg-gateway: treats it as a bad startup packet. PostgreSQL answers nothing and closes.
        this.services.cancel(packet.processId, packet.secretKey);
        return this.hangUp();
      case 'startup':
        if (!startupLayoutValid(data)) {
          return this.hangUp(fatal('08P01', 'invalid startup packet layout: expected terminator as last byte'));
        }
        if (packet.minor > 0) this.negotiateDown(data);
        return undefined; // pg-gateway reads user/database and starts SCRAM
      default:
        return this.hangUp(fatal('08P01', 'invalid startup packet'));
    }
  }

  /**
   * pg-gateway: rejects any protocol but 3.0. A 3.2 client (libpq with
   * max_protocol_version) expects NegotiateProtocolVersion instead, so send that
   * and patch the version in the packet pg-gateway is about to parse (it reads
   * this same buffer after the hook returns).
   */
  private negotiateDown(packet: Uint8Array): void {
    const options = Object.keys(readStartupParameters(packet)).filter((k) => k.startsWith('_pq_.'));
    this.out.write(negotiateProtocolVersion(3, 0, options));
    packet[6] = 0;
    packet[7] = 0;
  }

  private async onRegularMessage(data: Uint8Array): Promise<MessageResponse> {
    const code = data[0] ?? 0;
    if (code === OVERSIZED_MESSAGE) return this.onOversized(data);
    if (code === MSG.terminate) {
      const close = this.hangUp();
      void this.finish();
      return close;
    }
    if (code === MSG.sync) {
      this.skipUntilSync = false;
      this.out.write(readyForQuery('I'));
      return HANDLED;
    }
    // After an extended-protocol error PostgreSQL discards everything up to Sync.
    if (this.skipUntilSync || code === MSG.flush || COPY.has(code)) return HANDLED;
    if (code === MSG.query) {
      const sql = readQueryText(data);
      if (sql === undefined) return this.hangUp(fatal('08P01', 'invalid Query message'));
      await this.runQuery(sql);
      return HANDLED;
    }
    if (EXTENDED.has(code) || code === MSG.functionCall) {
      this.out.write(
        errorResponse({
          severity: 'ERROR',
          code: SqlState.featureNotSupported,
          message: 'the extended query protocol is not supported by this endpoint',
          hint: 'Send queries with the simple query protocol (no bind parameters).',
        }),
      );
      // FunctionCall is answered right away; extended messages wait for Sync.
      if (code === MSG.functionCall) this.out.write(readyForQuery('I'));
      else this.skipUntilSync = true;
      return HANDLED;
    }
    return this.hangUp(fatal('08P01', `invalid frontend message type ${code}`));
  }

  /**
   * A message over the request limit, whose body the framer skipped: refused
   * like PostgreSQL refuses what it cannot hold (54000), in the order of the
   * messages around it, and the connection goes on.
   */
  private onOversized(marker: Uint8Array): MessageResponse {
    const { type, length } = readOversizedMarker(marker);
    const limit = this.services.limits.requestBytes;
    if (type === MSG.sync || type === MSG.terminate) {
      return this.hangUp(fatal('08P01', 'invalid message length'));
    }
    if (this.skipUntilSync || type === MSG.flush || COPY.has(type)) return HANDLED;
    if (type !== MSG.query && type !== MSG.functionCall && !EXTENDED.has(type)) {
      return this.hangUp(fatal('08P01', `invalid frontend message type ${type}`));
    }
    this.logger.info({ type: String.fromCharCode(type), length, limit }, 'wire request too large');
    this.out.write(
      errorResponse({
        severity: 'ERROR',
        code: SqlState.programLimitExceeded,
        message: `request of ${length} bytes exceeds the limit of ${limit} bytes`,
        hint: 'Send a smaller request, or raise the server\'s request limit (maxRequestBytes; pgbg serve --max-request-bytes).',
      }),
    );
    // As for a message of normal size: a Query or FunctionCall is answered now, extended messages at Sync.
    if (EXTENDED.has(type)) this.skipUntilSync = true;
    else this.out.write(readyForQuery('I'));
    return HANDLED;
  }

  private async runQuery(sql: string): Promise<void> {
    if (!this.conn) return;
    const controller = new AbortController();
    const ctx = { out: this.out, handler: this.services.handler, conn: this.conn, logger: this.logger, answerSet: this.services.answerSet };
    const done = runSimpleQuery(ctx, sql, controller.signal).catch((err: unknown) => {
      // runSimpleQuery answers errors itself; reaching here means writing failed.
      this.logger.error({ err }, 'wire query failed');
    });
    this.current = { controller, done };
    try {
      await done;
    } finally {
      this.current = undefined;
    }
  }

  /**
   * Once per connection (Terminate or socket close): abort the running query,
   * let it settle, then tell the handler. onClose therefore never races a query
   * of the same connection.
   */
  private finish(): Promise<void> {
    this.finished ??= (async () => {
      const current = this.current;
      current?.controller.abort(new PgbgError(SqlState.connectionFailure, 'client connection closed'));
      await current?.done;
      if (!this.conn) return;
      this.services.unregister(this);
      try {
        this.services.handler.onClose?.(this.conn);
      } catch (err) {
        this.logger.error({ err }, 'wire handler onClose failed');
      }
      this.logger.info('wire connection closed');
    })();
    return this.finished;
  }
}

function remoteOf(socket: Socket): string {
  return socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort ?? ''}` : '';
}

/** An error for logging without any message text an `authenticate` callback might have put a secret in. */
function safeError(err: unknown): { name: string; code?: unknown } {
  if (err instanceof Error) return { name: err.name, code: (err as { code?: unknown }).code };
  return { name: typeof err };
}
