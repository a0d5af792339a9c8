/**
 * The server's endpoint port, kept in its data folder so that `pgbg install`
 * and `pgbg serve` agree on it and an installed API keeps working across
 * restarts. The file is trusted only when private (a regular file of the
 * server's user, mode 0600: see private-file.ts). It holds no secret: each
 * role's secret lives in its own user mapping, and the server keeps only values
 * derived from it (role-keys.ts).
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { freePort } from '../util/free-port.js';
import type { Endpoint } from '../install/install.js';
import { readPrivateFileIfExists, writePrivateFile } from '../util/private-file.js';

export interface ServerIdentity {
  port: number;
}

// An older server.json also holds `secret` (the shared secret of an earlier design): ignored, and dropped on rewrite.
const IdentityFile = z.object({ port: z.number().int().min(1).max(65535), secret: z.string().optional() });

/** Reads `<dataDir>/server.json`, creating it on first use; `port` (when given) replaces the stored one. */
export async function loadIdentity(dataDir: string, port?: number): Promise<ServerIdentity> {
  const file = path.join(dataDir, 'server.json');
  const text = readPrivateFileIfExists(file, 'server identity file');
  let stored: z.infer<typeof IdentityFile> | undefined;
  try {
    stored = text === undefined ? undefined : IdentityFile.parse(JSON.parse(text));
  } catch (err) {
    throw new Error(`${file} is damaged; remove it to start afresh`, { cause: err });
  }
  const wanted = { port: port ?? stored?.port ?? (await freePort()) };
  if (!stored || stored.port !== wanted.port || stored.secret !== undefined) {
    await mkdir(dataDir, { recursive: true });
    writePrivateFile(file, JSON.stringify(wanted) + '\n');
  }
  return wanted;
}

/** Where the database reaches the endpoint. */
export function endpointOf(host: string, identity: ServerIdentity): Endpoint {
  return { host, port: identity.port };
}
