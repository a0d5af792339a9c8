/**
 * A PostgreSQL wire-protocol endpoint that a real PostgreSQL reaches through
 * dblink (libpq), with the SQL answered by a pluggable handler.
 *
 * Scope, chosen for libpq/dblink:
 * - plaintext only: SSLRequest and GSSENCRequest are answered 'N';
 * - SCRAM-SHA-256 login (dblink requires a password for non-superusers);
 * - the simple query protocol; extended-protocol messages get 0A000;
 * - CancelRequest (dblink_cancel_query) aborts the handler's AbortSignal;
 * - bounded: each message's length is checked before its body is buffered
 *   (small before login, maxRequestBytes after), and a login must finish
 *   within authTimeoutMs.
 *
 * Connection plumbing lives in wire-client.ts (on top of pg-gateway), byte
 * layouts in wire-messages.ts, query execution in wire-query.ts, the handler
 * contract in wire-types.ts.
 */
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { mockVerifier, type WireAuthenticate } from './wire-auth.js';
import { secretKeysMatch } from './wire-messages.js';
import { WireClient, type WireClientServices } from './wire-client.js';
import type { WireHandler } from './wire-types.js';

export type { WireAuthenticate, WireCredentials } from './wire-auth.js';
export type { WireConnection, WireField, WireHandler, WireResult } from './wire-types.js';

export interface WireServerOptions {
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks a free port (see WireServer.port). @default 0 */
  port?: number;
  handler: WireHandler;
  /**
   * The secret for a user logging into a database, or undefined if unknown.
   * Unknown users and wrong passwords both get 28P01 and are disconnected.
   */
  authenticate: WireAuthenticate;
  /** @default pino({ name: 'pgbg-wire' }) */
  logger?: Logger;
  /** Reported as server_version; libpq parses the leading number. @default '18.0 (pgbg)' */
  serverVersion?: string;
  /**
   * A Query that is a single `SET name TO value` (what libpq's
   * PQsetClientEncoding and dblink_connect send) is answered 'SET' without
   * calling the handler; `SET client_encoding` to anything but UTF8 is refused
   * (0A000), since no conversion happens. false routes SETs to the handler.
   * @default true
   */
  answerSet?: boolean;
  /** How long close() lets clients read the shutdown error before cutting them off. @default 1000 */
  shutdownGraceMs?: number;
  /**
   * A client that has not logged in after this long gets FATAL 08006 and is
   * cut off (PostgreSQL's authentication_timeout, 60 s there: a login here is
   * one SCRAM exchange on loopback). @default 10000
   */
  authTimeoutMs?: number;
  /**
   * The longest message accepted before authentication (as PostgreSQL counts
   * a message's length: its length field); a longer one ends the connection
   * with FATAL 08P01 before its body is read. The startup packet is held to
   * 10000 bytes as well, like PostgreSQL's. @default 65536
   */
  maxPreAuthMessageBytes?: number;
  /**
   * The longest message accepted after authentication — in practice a
   * Query's SQL text. A longer one is answered with ERROR 54000 and skipped
   * as it arrives, never buffered; the connection goes on. @default 16777216 (16 MB)
   */
  maxRequestBytes?: number;
  /**
   * Connections that have not logged in yet, at most; one beyond is closed at
   * once (each pending login may make the server look up a role). @default 64
   */
  maxPendingLogins?: number;
}

/** The defaults of WireServerOptions' bounds. */
export const WIRE_LIMITS = {
  authTimeoutMs: 10_000,
  maxPreAuthMessageBytes: 64 * 1024,
  maxRequestBytes: 16 * 1024 * 1024,
  maxPendingLogins: 64,
} as const;

/** Bytes the server read from clients, and the part of them that reached the message parser (which buffers each message whole). */
export interface InboundBytes {
  read: number;
  parsed: number;
}

export interface WireServer {
  readonly port: number;
  readonly host: string;
  /**
   * Stops accepting, ends every connection (FATAL 57P01) and aborts running
   * queries; resolves once all sockets closed and every onClose ran (so a
   * handler that ignores its AbortSignal delays it).
   */
  close(): Promise<void>;
  /** Open client sockets, authenticated or not. */
  connections(): number;
  /** Totals since the server started, over every connection. */
  inbound(): InboundBytes;
}

function limit(name: keyof typeof WIRE_LIMITS, value: number | undefined, min: number): number {
  const v = value ?? WIRE_LIMITS[name];
  if (!Number.isInteger(v) || v < min) throw new RangeError(`${name} must be a whole number, ${min} or more (got ${v})`);
  return v;
}

export async function startWireServer(opts: WireServerOptions): Promise<WireServer> {
  const logger = opts.logger ?? pino({ name: 'pgbg-wire' });
  const host = opts.host ?? '127.0.0.1';
  const authTimeoutMs = limit('authTimeoutMs', opts.authTimeoutMs, 1);
  // A SCRAM exchange's messages are a few hundred bytes; a Query needs room for its SQL.
  const preAuthBytes = limit('maxPreAuthMessageBytes', opts.maxPreAuthMessageBytes, 1024);
  const requestBytes = limit('maxRequestBytes', opts.maxRequestBytes, 1024);
  const maxPendingLogins = limit('maxPendingLogins', opts.maxPendingLogins, 1);
  let refusedLogins = 0;
  const open = new Set<WireClient>();
  /** Inbound totals of the connections already closed. */
  const closedInbound: InboundBytes = { read: 0, parsed: 0 };
  /** Authenticated clients by process id, for CancelRequest. */
  const byId = new Map<number, WireClient>();
  // Random start so ids are not guessable from "one more than mine" across restarts;
  // the secret key is what actually protects cancel.
  let nextId = randomInt(10_000, 1_000_000);
  const allocateId = (): number => {
    do nextId = nextId >= 0x7fffffff ? 10_000 : nextId + 1;
    while (byId.has(nextId));
    return nextId;
  };

  const services: WireClientServices = {
    handler: opts.handler,
    authenticate: opts.authenticate,
    mockVerifier: mockVerifier(),
    logger,
    serverVersion: opts.serverVersion ?? '18.0 (pgbg)',
    answerSet: opts.answerSet ?? true,
    authTimeoutMs,
    limits: { preAuthBytes, requestBytes },
    register: (s) => byId.set(s.id, s),
    unregister: (s) => {
      if (byId.get(s.id) === s) byId.delete(s.id);
    },
    cancel(processId, secretKey) {
      const target = byId.get(processId);
      // Compare even when the id is unknown so timing does not reveal live ids.
      const ok = secretKeysMatch(target?.secretKey ?? Buffer.alloc(4), secretKey) && target !== undefined;
      logger.info({ target: processId, matched: ok }, 'wire cancel request');
      if (ok) target.cancel();
    },
  };

  const server = net.createServer({ noDelay: true }, (socket) => {
    // byId holds the authenticated clients: the rest of `open` are logging in.
    if (open.size - byId.size >= maxPendingLogins) {
      if (refusedLogins++ % 1000 === 0) logger.warn({ maxPendingLogins, refused: refusedLogins }, 'wire: too many connections logging in at once; refusing more');
      socket.destroy();
      return;
    }
    const client = new WireClient(socket, allocateId(), services);
    open.add(client);
    void client.closed.then(() => {
      open.delete(client);
      closedInbound.read += socket.bytesRead;
      closedInbound.parsed += client.framer.forwarded;
    });
    client.start();
  });
  server.on('error', (err) => logger.error({ err }, 'wire server error'));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  logger.info({ host, port }, 'wire server listening');

  let closing: Promise<void> | undefined;
  return {
    port,
    host,
    connections: () => open.size,
    inbound() {
      const totals = { ...closedInbound };
      for (const s of open) {
        totals.read += s.bytesRead;
        totals.parsed += s.framer.forwarded;
      }
      return totals;
    },
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        const clients = [...open];
        for (const s of clients) s.shutdown(opts.shutdownGraceMs ?? 1000);
        await Promise.all(clients.map((s) => s.closed));
        await stopped;
        logger.info({ port }, 'wire server closed');
      })();
      return closing;
    },
  };
}
