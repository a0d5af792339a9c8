/**
 * Files holding secrets are trusted only when private: a regular file (no
 * symlink), owned by the user pgbg runs as, with no group or other access.
 * Checked where each is read: server.json (loadIdentity), the embedded
 * PostgreSQL's password file (startEmbeddedPostgres) and the worker
 * credentials files (loadCredentials).
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, lstat, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres } from '../../src/embedded/postgres.js';
import { loadCredentials } from '../../src/server/credentials.js';
import { loadIdentity } from '../../src/server/identity.js';

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;
const NOT_ROOT = 'needs root: only root can give a file to another user (chown), so the owner check is exercised only when the tests run as root';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgbg-private-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The refusal: SQLSTATE 42501, a message naming the file and what is wrong, a hint with the fix. */
function refusal(file: string, what: RegExp, fix: RegExp) {
  return (err: unknown) => {
    const e = err as { code?: string; message: string; hint?: string };
    assert.equal(e.code, '42501', `SQLSTATE of: ${e.message}`);
    assert.ok(e.message.includes(file), `the message names the file: ${e.message}`);
    assert.match(e.message, what);
    assert.match(e.hint ?? '', fix);
    return true;
  };
}

interface Case {
  /** The file name the reader expects in `dir`. */
  name: string;
  /** Valid content. */
  content: string;
  /** Reads the file as pgbg does; resolves when it was accepted. */
  read(dir: string, file: string): Promise<unknown>;
}

const cases: Case[] = [
  {
    name: 'server.json',
    content: JSON.stringify({ port: 45678, secret: 'a-secret-of-enough-length' }) + '\n',
    read: (dir) => loadIdentity(dir),
  },
  {
    name: 'pg.password',
    content: 'embedded-superuser-password\n',
    // Refused before anything else happens; should a server start anyway, stop it.
    read: async (dir) => {
      const server = await startEmbeddedPostgres({ dataDir: path.join(dir, 'pg') });
      await server.stop();
    },
  },
  {
    name: 'pgpass',
    content: '*:*:*:alice:s3cret\n',
    read: async (_dir, file) => loadCredentials({ host: 'h', port: 1, pgpassFile: file }),
  },
  {
    name: 'passwords.json',
    content: JSON.stringify({ alice: 's3cret' }),
    read: async (_dir, file) => loadCredentials({ host: 'h', port: 1, passwordsFile: file }),
  },
];

for (const c of cases) {
  describe(`${c.name} is trusted only when private`, () => {
    test('a symlink is refused, even to a private file', () =>
      withDir(async (dir) => {
        const target = path.join(dir, 'elsewhere');
        await writeFile(target, c.content, { mode: 0o600 });
        const file = path.join(dir, c.name);
        await symlink(target, file);
        await assert.rejects(c.read(dir, file), refusal(file, /symbolic link/, /replace the link/));
      }));

    test('mode 0644 is refused', () =>
      withDir(async (dir) => {
        const file = path.join(dir, c.name);
        await writeFile(file, c.content);
        await chmod(file, 0o644);
        await assert.rejects(c.read(dir, file), refusal(file, /group or other access \(mode 0644\)/, new RegExp(`chmod 600 ${file}`)));
      }));

    test('a file owned by another user is refused', (t: TestContext) => {
      if (!isRoot) {
        t.skip(NOT_ROOT);
        return;
      }
      return withDir(async (dir) => {
        const file = path.join(dir, c.name);
        await writeFile(file, c.content, { mode: 0o600 });
        await chown(file, NOBODY, NOBODY);
        await assert.rejects(c.read(dir, file), refusal(file, new RegExp(`owned by uid ${NOBODY}, not by uid ${process.getuid!()}`), /chown/));
      });
    });

    if (c.name !== 'pg.password') {
      test('a private file of our own (0600) is accepted', () =>
        withDir(async (dir) => {
          const file = path.join(dir, c.name);
          await writeFile(file, c.content, { mode: 0o600 });
          await c.read(dir, file);
        }));
    }
  });
}

test('server.json is created 0600, owned by us, a regular file — whatever the umask', () =>
  withDir(async (dir) => {
    const old = process.umask(0);
    try {
      await loadIdentity(dir, 45679);
      const file = path.join(dir, 'server.json');
      const st = await lstat(file);
      assert.ok(st.isFile());
      assert.equal(st.mode & 0o777, 0o600);
      assert.equal(st.uid, process.getuid?.() ?? st.uid);
      // A new port rewrites it, still private.
      const again = await loadIdentity(dir, 45680);
      assert.equal(again.port, 45680);
      assert.equal((await lstat(file)).mode & 0o777, 0o600);
      assert.equal(JSON.parse(await readFile(file, 'utf8')).port, 45680);
    } finally {
      process.umask(old);
    }
  }));
