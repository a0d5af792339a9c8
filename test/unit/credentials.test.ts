/** Worker credentials: mapping, pgpass and trust socket, first match wins; never a fallback login. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadCredentials } from '../../src/server/credentials.js';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgbg-cred-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('pgpass lines match host, port, database and user, with * wildcards and escaped colons', () =>
  withDir(async (dir) => {
    const file = path.join(dir, 'pgpass');
    await writeFile(file, ['# comment', '127.0.0.1:5432:app:alice:a\\:1', '*:*:*:bob:b2', '127.0.0.1:5999:*:carol:c3', ''].join('\n'), { mode: 0o600 });
    const creds = loadCredentials({ host: '127.0.0.1', port: 5432, pgpassFile: file });
    assert.deepEqual(creds('app', 'alice'), { host: '127.0.0.1', port: 5432, user: 'alice', database: 'app', password: 'a:1' });
    assert.equal(creds('other', 'alice'), undefined, 'the database must match');
    assert.equal(creds('any', 'bob')?.password, 'b2');
    assert.equal(creds('app', 'carol'), undefined, 'the port must match');
    assert.equal(creds('app', 'mallory'), undefined, 'no entry: no login at all');
  }));

test('the mapping wins over pgpass; the trust socket is the last resort and carries no password', () =>
  withDir(async (dir) => {
    const pgpass = path.join(dir, 'pgpass');
    const passwords = path.join(dir, 'passwords.json');
    await writeFile(pgpass, '*:*:*:alice:from-pgpass\n', { mode: 0o600 });
    await writeFile(passwords, JSON.stringify({ alice: 'from-map' }), { mode: 0o600 });
    const creds = loadCredentials({ host: 'db', port: 5432, pgpassFile: pgpass, passwordsFile: passwords, trustSocketDir: '/run/pg' });
    assert.equal(creds('app', 'alice')?.password, 'from-map');
    assert.deepEqual(creds('app', 'dave'), { host: '/run/pg', port: 5432, user: 'dave', database: 'app' });
  }));

test('secrets files readable by others are refused; bad JSON does not echo the file', () =>
  withDir(async (dir) => {
    const open = path.join(dir, 'open');
    await writeFile(open, '*:*:*:*:x\n');
    await chmod(open, 0o644);
    assert.throws(() => loadCredentials({ host: 'h', port: 1, pgpassFile: open }), { code: '42501', message: /group or other access \(mode 0644\)/ });
    const bad = path.join(dir, 'bad.json');
    await writeFile(bad, '{"alice": "s3cret-value", oops}', { mode: 0o600 });
    assert.throws(() => loadCredentials({ host: 'h', port: 1, passwordsFile: bad }), (err: Error) => {
      assert.equal((err as { code?: string }).code, '22023');
      assert.doesNotMatch(err.message, /s3cret/);
      return true;
    });
    const notMap = path.join(dir, 'list.json');
    await writeFile(notMap, '["alice"]', { mode: 0o600 });
    assert.throws(() => loadCredentials({ host: 'h', port: 1, passwordsFile: notMap }), { code: '22023' });
    assert.throws(() => loadCredentials({ host: 'h', port: 1, pgpassFile: path.join(dir, 'missing') }), { code: '22023' });
  }));
