/**
 * The server's address and secret, kept in its data folder (0600) so that
 * `pgbg install` and `pgbg serve` agree on them and an installed API keeps
 * working across restarts.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { freePort } from '../embedded/postgres.js';

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
  let identity: ServerIdentity | undefined;
  try {
    identity = IdentityFile.parse(JSON.parse(await readFile(file, 'utf8')));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${file} is damaged; remove it to start afresh`, { cause: err });
  }
  const wanted = { port: port ?? identity?.port ?? (await freePort()), secret: identity?.secret ?? randomBytes(24).toString('base64url') };
  if (!identity || identity.port !== wanted.port) {
    await mkdir(dataDir, { recursive: true });
    await writeFile(file, JSON.stringify(wanted) + '\n', { mode: 0o600 });
    await chmod(file, 0o600);
  }
  return wanted;
}

/** The libpq connection string the SQL API uses to reach the server (the database is added per caller). */
export function apiConnstr(host: string, identity: ServerIdentity): string {
  return `host=${host} port=${identity.port} user=${API_LOGIN} password=${identity.secret}`;
}
