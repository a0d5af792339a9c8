/**
 * SCRAM-SHA-256 for the wire server, on top of pg-gateway's SCRAM flow.
 *
 * dblink refuses connections that did not use a password for non-superusers,
 * so the endpoint always asks for one; SCRAM is what PostgreSQL itself uses and
 * what libpq prefers. pg-gateway runs the SASL exchange; we supply the verifier
 * (from a password or a stored `SCRAM-SHA-256$...` string) and the verdict.
 *
 * Unknown users get a mock verifier, as PostgreSQL does, so a client cannot
 * tell "no such user" from "wrong password". The secret never leaves this
 * module: not in errors, not in log lines.
 */
import { randomBytes } from 'node:crypto';
import {
  createScramSha256Data,
  verifyScramSha256Password,
  type ScramSha256AuthOptions,
  type ScramSha256Data,
} from 'pg-gateway';

/** What `authenticate` returns for a known user: a password, or a PostgreSQL SCRAM verifier. */
export type WireCredentials = { password: string } | { scramVerifier: string };

export type WireAuthenticate = (
  user: string,
  database: string,
) => WireCredentials | undefined | Promise<WireCredentials | undefined>;

/** PostgreSQL's default iteration count (scram_iterations). */
const ITERATIONS = 4096;

/**
 * Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (the
 * format of pg_authid.rolpassword). Returns undefined when malformed.
 */
export function parseScramVerifier(verifier: string): ScramSha256Data | undefined {
  const m = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/.exec(verifier);
  if (!m) return undefined;
  const iterations = Number(m[1]);
  if (!Number.isSafeInteger(iterations) || iterations < 1) return undefined;
  return { iterations, salt: m[2]!, storedKey: m[3]!, serverKey: m[4]! };
}

/**
 * An approximation of SASLprep (RFC 4013), which libpq applies to the password
 * before hashing: non-ASCII spaces become spaces, "mapped to nothing"
 * characters go, then NFKC. ASCII passwords are unchanged, as in libpq.
 */
export function saslPrep(password: string): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  let mapped = '';
  for (const ch of password) {
    const cp = ch.codePointAt(0) ?? 0;
    if (isNonAsciiSpace(cp)) mapped += ' ';
    else if (!isMappedToNothing(cp)) mapped += ch;
  }
  return mapped.normalize('NFKC');
}

/** RFC 3454 table C.1.2, as PostgreSQL's pg_saslprep uses it. */
function isNonAsciiSpace(cp: number): boolean {
  return cp === 0xa0 || cp === 0x1680 || (cp >= 0x2000 && cp <= 0x200b) || cp === 0x202f || cp === 0x205f || cp === 0x3000;
}

/** RFC 3454 table B.1 ("commonly mapped to nothing"). */
function isMappedToNothing(cp: number): boolean {
  return (
    cp === 0xad || cp === 0x34f || cp === 0x1806 || (cp >= 0x180b && cp <= 0x180d) || (cp >= 0x200b && cp <= 0x200d) ||
    cp === 0x2060 || (cp >= 0xfe00 && cp <= 0xfe0f) || cp === 0xfeff
  );
}

async function verifierFor(creds: WireCredentials): Promise<ScramSha256Data | undefined> {
  if ('scramVerifier' in creds) return parseScramVerifier(creds.scramVerifier);
  return createScramSha256Data(saslPrep(creds.password), ITERATIONS);
}

export interface ScramHooks {
  /** Wrong password or unknown user: the caller sends 28P01 and closes. */
  onFailure(user: string): void;
  /** `authenticate` threw or returned an unusable verifier (never includes the secret). */
  onLookupError(user: string, err: unknown): void;
}

/**
 * pg-gateway auth options for one connection. `mock` supplies the verifier
 * used for unknown users (one per server, so its salt is stable like PostgreSQL's).
 */
export function scramAuthOptions(
  authenticate: WireAuthenticate,
  mock: () => Promise<ScramSha256Data>,
  hooks: ScramHooks,
): ScramSha256AuthOptions {
  let known = false;
  return {
    method: 'scram-sha-256',
    async getScramSha256Data({ username }, state) {
      const database = state.clientParams?.database ?? username;
      try {
        const creds = await authenticate(username, database);
        const data = creds ? await verifierFor(creds) : undefined;
        if (creds && !data) hooks.onLookupError(username, new Error('malformed SCRAM verifier'));
        known = data !== undefined;
        return data ?? (await mock());
      } catch (err) {
        hooks.onLookupError(username, err);
        known = false;
        return mock();
      }
    },
    async validateCredentials({ authMessage, clientProof, username, scramSha256Data }) {
      let ok: boolean;
      try {
        ok = known && (await verifyScramSha256Password({ authMessage, clientProof, storedKey: scramSha256Data.storedKey }));
      } catch {
        ok = false; // malformed proof: same answer as a wrong one
      }
      if (!ok) hooks.onFailure(username);
      return ok;
    },
  };
}

/** A verifier for a random password nobody knows. */
export function mockVerifier(): () => Promise<ScramSha256Data> {
  let cached: Promise<ScramSha256Data> | undefined;
  return () => (cached ??= createScramSha256Data(randomBytes(32).toString('base64'), ITERATIONS));
}
