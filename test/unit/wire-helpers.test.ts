/** The wire server's small pure helpers: SET recognition, SCRAM secrets, error mapping. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { PgbgError } from '../../src/protocol/errors.js';
import { parseScramVerifier, saslPrep } from '../../src/server/wire-auth.js';
import { errorFieldsFor, hasSqlState, isSqlState } from '../../src/server/wire-errors.js';
import { parseSet } from '../../src/server/wire-query.js';

test('parseSet recognises one plain SET, nothing more', () => {
  assert.deepEqual(parseSet(`set client_encoding to 'UTF8'`), { name: 'client_encoding', value: `'UTF8'` });
  assert.deepEqual(parseSet(`SET SESSION DateStyle = ISO, MDY;`), { name: 'datestyle', value: 'ISO, MDY' });
  assert.deepEqual(parseSet(`  SET search_path TO 'a''b' ; `), { name: 'search_path', value: `'a''b'` });
  assert.equal(parseSet(`SET x TO 1; SELECT 1`), undefined, 'several statements go to the handler');
  assert.equal(parseSet(`SET x TO 'a;b'; DROP TABLE t`), undefined);
  assert.equal(parseSet(`SELECT 'SET x TO 1'`), undefined);
  assert.equal(parseSet(`SET TIME ZONE 'UTC'`), undefined);
});

test('parseScramVerifier reads pg_authid.rolpassword', () => {
  const v = 'SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVk:c2VydmVy';
  assert.deepEqual(parseScramVerifier(v), { iterations: 4096, salt: 'c2FsdHNhbHQ=', storedKey: 'c3RvcmVk', serverKey: 'c2VydmVy' });
  assert.equal(parseScramVerifier('md5abcdef'), undefined);
  assert.equal(parseScramVerifier('SCRAM-SHA-256$0:c2Fs$a:b'), undefined);
  assert.equal(parseScramVerifier('SCRAM-SHA-256$4096:c2Fs$a'), undefined);
});

test('saslPrep maps spaces, drops invisible characters, NFKC-normalises', () => {
  assert.equal(saslPrep('plain ascii'), 'plain ascii');
  assert.equal(saslPrep('a\u00a0b'), 'a b');
  assert.equal(saslPrep('a\u00adb\u200dc'), 'abc');
  assert.equal(saslPrep('\ufb01x'), 'fix');
  assert.equal(saslPrep('e\u0301'), '\u00e9');
});

test('only SQLSTATE-looking codes count', () => {
  for (const ok of ['22023', '57014', 'XX000', 'P0001', '0A000']) assert.equal(isSqlState(ok), true, ok);
  for (const no of ['EPIPE', 'ECONNRESET', '2202', '220233', 'abcde', 22023]) assert.equal(isSqlState(no), false, String(no));
  assert.equal(hasSqlState(Object.assign(new Error('x'), { code: 'EPERM' })), false);
});

function capture() {
  const lines: string[] = [];
  const logger = pino(new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }));
  return { lines, logger };
}

test('coded errors keep every field; severity is always ERROR', () => {
  const { lines, logger } = capture();
  const err = new PgbgError('23505', 'dup', { detail: 'd', hint: 'h', position: '3', where: 'w', schema: 's', table: 't', column: 'c', dataType: 'int4', constraint: 'k' });
  err.severity = 'FATAL';
  const f = errorFieldsFor(err, new AbortController().signal, logger);
  assert.deepEqual(f, {
    severity: 'ERROR', code: '23505', message: 'dup', detail: 'd', hint: 'h', position: '3',
    where: 'w', schema: 's', table: 't', column: 'c', dataType: 'int4', constraint: 'k',
  });
  assert.equal(lines.length, 0, 'coded errors are the client\'s business, not logged');
});

test('other errors become XX000 and are logged, not sent', () => {
  const { lines, logger } = capture();
  const f = errorFieldsFor(new Error('connection string postgres://u:pw@h'), new AbortController().signal, logger);
  assert.deepEqual(f, { severity: 'ERROR', code: 'XX000', message: 'internal error' });
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /wire handler failed/);
});

test('an uncoded error after abort reads as a cancel', () => {
  const { logger } = capture();
  const ac = new AbortController();
  ac.abort();
  assert.equal(errorFieldsFor(new DOMException('aborted', 'AbortError'), ac.signal, logger).code, '57014');
});
