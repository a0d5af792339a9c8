/**
 * The proof every SQL API request carries (see src/install/sql/api.sql,
 * pgbg_private.sign): `pgbg1 <seq> <proof>\n<body>`, where
 *
 *   proof = secret XOR sha256(sha256(secret) || "<nonce> <seq> " || body)
 *
 * written as 256 bits. The server holds sha256(secret) (the role's proof key):
 * it recomputes the hash, recovers the secret from the proof and checks that its
 * sha256 is the proof key. What the server stores therefore cannot make a proof,
 * and a proof is good for one body, on one connection (its nonce), once (its seq).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { PgbgError, SqlState } from '../protocol/errors.js';

export interface SignedRequest {
  seq: bigint;
  proof: Buffer;
  body: string;
}

const HEADER = /^pgbg1 (\d{1,20}) ([01]{256})\n/;

/** Splits a request into its header and body; undefined when it has no valid header. */
export function parseSignedRequest(text: string): SignedRequest | undefined {
  const m = HEADER.exec(text);
  if (!m) return undefined;
  const bits = m[2]!;
  const proof = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) proof[i] = parseInt(bits.slice(i * 8, i * 8 + 8), 2);
  return { seq: BigInt(m[1]!), proof, body: text.slice(m[0].length) };
}

/** True when `request` was made with the secret whose sha256 is `proofKey`, for this nonce. */
export function proofIsValid(request: SignedRequest, nonce: string, proofKey: Buffer): boolean {
  if (proofKey.length !== 32) return false;
  const mac = createHash('sha256').update(proofKey).update(`${nonce} ${request.seq} ${request.body}`, 'utf8').digest();
  const secret = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) secret[i] = request.proof[i]! ^ mac[i]!;
  return timingSafeEqual(createHash('sha256').update(secret).digest(), proofKey);
}

/**
 * Vouches for an answer: sha256(answerKey || text), where answerKey =
 * sha256(proofKey || "answer <nonce> <seq>"). Only the server and the role
 * (which can compute its proof key from its secret) know the answer key.
 */
export function answerMac(proofKey: Buffer, nonce: string, seq: bigint, text: string): string {
  const answerKey = createHash('sha256').update(proofKey).update(`answer ${nonce} ${seq}`, 'utf8').digest();
  return createHash('sha256').update(answerKey).update(text, 'utf8').digest('hex');
}

/** What a hello's backend shows as its application_name: (128 bits of) the nonce's hash, never the nonce. */
export function helloApplicationName(nonce: string): string {
  return `pgbg hello ${createHash('sha256').update(nonce, 'utf8').digest('hex').slice(0, 32)}`;
}

/** Makes a request as the SQL API does (for tests and tools that speak to the endpoint directly). */
export function signRequest(secretHex: string, nonce: string, seq: bigint, body: string): string {
  const secret = Buffer.from(secretHex, 'hex');
  const proofKey = createHash('sha256').update(secret).digest();
  const mac = createHash('sha256').update(proofKey).update(`${nonce} ${seq} ${body}`, 'utf8').digest();
  let bits = '';
  for (let i = 0; i < 32; i++) bits += (secret[i]! ^ mac[i]!).toString(2).padStart(8, '0');
  return `pgbg1 ${seq} ${bits}\n${body}`;
}

export function badProof(): PgbgError {
  return new PgbgError(SqlState.invalidAuthorization, 'pgbg SQL API request refused: its proof does not match the role of this connection', {
    hint: 'Requests come from the SQL API functions; if the role\'s secret was just renewed, retry.',
  });
}

export function replayedRequest(): PgbgError {
  return new PgbgError(SqlState.invalidAuthorization, 'pgbg SQL API request refused: its sequence number was already used on this connection');
}
