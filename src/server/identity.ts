/**
 * The server's endpoint port, kept in its data folder (0600) so that `pgbg
 * install` and `pgbg serve` agree on it and an installed API keeps working
 * across restarts. It holds no secret: each role's secret lives in its own user
 * mapping, and the server keeps only values derived from it (role-keys.ts).
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { freePort } from '../embedded/postgres.js';
import type { Endpoint } from '../install/install.js';

export interface ServerIdentity {
  port: number;
}

// An older server.json also holds `secret` (the shared secret of an earlier design): ignored, and dropped on rewrite.
const IdentityFile = z.object({ port: z.number().int().min(1).max(65535), secret: z.string().optional() });

/** Reads `<dataDir>/server.json`, creating it on first use; `port` (when given) replaces the stored one. */
export async function loadIdentity(dataDir: string, port?: number): Promise<ServerIdentity> {
  const file = path.join(dataDir, 'server.json');
  let stored: z.infer<typeof IdentityFile> | undefined;
  try {
    stored = IdentityFile.parse(JSON.parse(await readFile(file, 'utf8')));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${file} is damaged; remove it to start afresh`, { cause: err });
  }
  const wanted = { port: port ?? stored?.port ?? (await freePort()) };
  if (!stored || stored.port !== wanted.port || stored.secret !== undefined) {
    await mkdir(dataDir, { recursive: true });
    await writeFile(file, JSON.stringify(wanted) + '\n', { mode: 0o600 });
    await chmod(file, 0o600);
  }
  return wanted;
}

/** Where the database reaches the endpoint. */
export function endpointOf(host: string, identity: ServerIdentity): Endpoint {
  return { host, port: identity.port };
}
