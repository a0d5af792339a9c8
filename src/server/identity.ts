/**
 * The server's address and secret, kept in its data folder so that
 * `pgbg install` and `pgbg serve` agree on them and an installed API keeps
 * working across restarts. The file is trusted only when private (a regular
 * file of the server's user, mode 0600: see private-file.ts).
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { freePort } from '../embedded/postgres.js';
import { readPrivateFileIfExists, writePrivateFile } from './private-file.js';

export interface ServerIdentity {
  port: number;
  /** The password of the `pgbg` login the SQL API uses; base64url, so it needs no quoting in a connection string. */
  secret: string;
}

export const API_LOGIN = 'pgbg';

const IdentityFile = z.object({ port: z.number().int().min(1).max(65535), secret: z.string().min(16) });

/** Reads `<dataDir>/server.json`, creating it on first use; `port` (when given) replaces the stored one. */
export async function loadIdentity(dataDir: string, port?: number): Promise<ServerIdentity> {
  const file = path.join(dataDir, 'server.json');
  const text = readPrivateFileIfExists(file, 'server identity file');
  let identity: ServerIdentity | undefined;
  try {
    identity = text === undefined ? undefined : IdentityFile.parse(JSON.parse(text));
  } catch (err) {
    throw new Error(`${file} is damaged; remove it to start afresh`, { cause: err });
  }
  const wanted = { port: port ?? identity?.port ?? (await freePort()), secret: identity?.secret ?? randomBytes(24).toString('base64url') };
  if (!identity || identity.port !== wanted.port) {
    await mkdir(dataDir, { recursive: true });
    writePrivateFile(file, JSON.stringify(wanted) + '\n');
  }
  return wanted;
}

/** The libpq connection string the SQL API uses to reach the server (the database is added per caller). */
export function apiConnstr(host: string, identity: ServerIdentity): string {
  return `host=${host} port=${identity.port} user=${API_LOGIN} password=${identity.secret}`;
}
