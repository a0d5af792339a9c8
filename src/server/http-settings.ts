/**
 * Where the HTTP API listens and the token it takes, kept in the server's data
 * folder like the endpoint's port: `http.json` (its port, chosen on first use)
 * and `http.token` (256 random bits, made on first use and kept, so a scraper's
 * configuration survives restarts; remove the file to make a new one). Both are
 * private files (0600, checked on every read: see private-file.ts).
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import { freePort } from '../util/free-port.js';
import { readPrivateFileIfExists, writePrivateFile } from '../util/private-file.js';

/** `--http`: off, or the address to listen on (the port: the stored one, else a free one). */
export type HttpAddress = { host: string; port?: number | undefined } | 'off';

export interface HttpSettings {
  host: string;
  port: number;
  token: string;
  /** The token's file (absolute): what the ready output names, never the token itself. */
  tokenFile: string;
}

const TOKEN = /^[A-Za-z0-9_-]{32,256}$/;
const HttpFile = z.object({ port: z.number().int().min(1).max(65535) });

/** Parses `off`, `HOST`, `HOST:PORT`, `:PORT` or `[IPv6]:PORT`; `HOST` alone keeps the stored port. */
export function parseHttpAddress(value: string): HttpAddress {
  if (value === 'off') return 'off';
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*))(?::(\d{1,5}))?$/.exec(value);
  const host = m?.[1] ?? m?.[2];
  const port = m?.[3] === undefined ? undefined : Number(m[3]);
  if (!m || (host !== undefined && host.includes(' ')) || (port !== undefined && (port < 1 || port > 65535))) {
    throw new Error(`--http: off, HOST, HOST:PORT or [IPv6]:PORT (port 1..65535), not "${value}"`);
  }
  return { host: host || '127.0.0.1', port };
}

/** True for addresses only this host reaches: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return net.isIPv4(host) && host.startsWith('127.');
}

/** Reads (or makes, on first use) the HTTP API's port and token in `dataDir`; a port given replaces the stored one. */
export async function loadHttpSettings(dataDir: string, address: { host: string; port?: number | undefined }): Promise<HttpSettings> {
  await mkdir(dataDir, { recursive: true });
  const portFile = path.join(dataDir, 'http.json');
  const text = readPrivateFileIfExists(portFile, 'HTTP API settings file');
  let stored: number | undefined;
  try {
    stored = text === undefined ? undefined : HttpFile.parse(JSON.parse(text)).port;
  } catch (err) {
    throw new Error(`${portFile} is damaged; remove it to start afresh`, { cause: err });
  }
  const port = address.port ?? stored ?? (await freePort());
  if (port !== stored) writePrivateFile(portFile, JSON.stringify({ port }) + '\n');

  const tokenFile = path.resolve(dataDir, 'http.token');
  let token = readPrivateFileIfExists(tokenFile, 'HTTP API token file')?.trim();
  if (token === undefined) {
    token = randomBytes(32).toString('base64url');
    writePrivateFile(tokenFile, token + '\n');
  } else if (!TOKEN.test(token)) {
    throw new Error(`${tokenFile} does not hold a token (32 to 256 characters of A-Z, a-z, 0-9, - and _); remove it to make a new one`);
  }
  return { host: address.host, port, token, tokenFile };
}
