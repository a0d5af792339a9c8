/**
 * The worker's own connection to the server: a plain socket read through the
 * shared buffer (RelaySocket), or TLS that the worker negotiates itself
 * (SSLRequest, or direct TLS with ALPN) so that it reads the plaintext. Either
 * way node-postgres only ever sees the bytes of the login, through LoginStream.
 */
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';
import { serialize } from 'pg-protocol';
import { RelaySocket } from './relay-socket.js';
import { RowRelay } from './row-relay.js';

export interface Transport {
  readonly socket: net.Socket;
  readonly relay: RowRelay;
}

/** Where node-postgres asked to connect: a Unix socket path, or a port and host. */
export type DialTarget = { path: string } | { port: number; host: string };

export interface TlsSettings {
  options: tls.ConnectionOptions;
  /** sslnegotiation=direct: TLS from the first byte, no SSLRequest. */
  direct: boolean;
}

/**
 * The client config node-postgres logs in with (TLS off: the worker does it)
 * and the TLS the worker must negotiate, resolved as node-postgres would:
 * the config's `ssl`, else the connection string's, else PGSSLMODE.
 */
export function splitTls(config: pg.ClientConfig): { client: pg.ClientConfig; tls: TlsSettings | undefined } {
  const merged: pg.ClientConfig = config.connectionString
    ? { ...config, ...parseIntoClientConfig(config.connectionString), connectionString: undefined }
    : { ...config };
  const ssl = merged.ssl ?? sslFromEnvironment();
  const client = { ...merged, ssl: false, sslnegotiation: undefined };
  if (!ssl) return { client, tls: undefined };
  return { client, tls: { options: ssl === true ? {} : ssl, direct: merged.sslnegotiation === 'direct' } };
}

function sslFromEnvironment(): pg.ClientConfig['ssl'] {
  switch (process.env.PGSSLMODE) {
    case 'disable':
      return false;
    case 'prefer':
    case 'require':
    case 'verify-ca':
    case 'verify-full':
      return true;
    case 'no-verify':
      return { rejectUnauthorized: false };
  }
  return pg.defaults.ssl;
}

export async function dial(target: DialTarget, settings: TlsSettings | undefined): Promise<Transport> {
  if (!settings) {
    const socket = new RelaySocket();
    await connected(connectTo(socket, target));
    return { socket, relay: socket.relay };
  }
  const raw = await connected(connectTo(new net.Socket(), target));
  try {
    if (!settings.direct) {
      raw.write(serialize.requestSsl());
      const answer: Buffer = (await once(raw, 'data'))[0];
      if (answer[0] !== 0x53 /* 'S' */) throw new Error('The server does not support SSL connections');
    }
    const host = 'host' in target ? target.host : 'localhost';
    const socket = tls.connect({
      ...settings.options,
      socket: raw,
      host,
      // SNI must not name an IP address (RFC 6066, section 3).
      ...(net.isIP(host) === 0 ? { servername: host } : {}),
      ...(settings.direct ? { ALPNProtocols: ['postgresql'] } : {}),
    });
    await once(socket, 'secureConnect');
    const relay = new RowRelay({ pause: () => socket.pause(), resume: () => socket.resume(), get destroyed() { return socket.destroyed; } }, () => undefined);
    socket.on('data', (chunk: Buffer) => relay.receive(chunk));
    return { socket, relay };
  } catch (err) {
    raw.destroy();
    throw err;
  }
}

function connectTo<S extends net.Socket>(socket: S, target: DialTarget): S {
  if ('path' in target) socket.connect(target.path);
  else socket.connect(target.port, target.host);
  return socket;
}

async function connected<S extends net.Socket>(socket: S): Promise<S> {
  try {
    await once(socket, 'connect');
    return socket;
  } catch (err) {
    socket.destroy();
    throw err;
  }
}
