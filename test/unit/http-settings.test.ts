/**
 * The HTTP API's settings: `--http` values, what counts as loopback, and the
 * port and token kept in the data folder (private files, made once, kept).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isLoopback, loadHttpSettings, parseHttpAddress } from '../../src/server/http-settings.js';

describe('HTTP API settings', () => {
  test('--http: off, HOST, HOST:PORT, :PORT, [IPv6]:PORT', () => {
    assert.equal(parseHttpAddress('off'), 'off');
    assert.deepEqual(parseHttpAddress('127.0.0.1'), { host: '127.0.0.1', port: undefined });
    assert.deepEqual(parseHttpAddress('127.0.0.1:9187'), { host: '127.0.0.1', port: 9187 });
    assert.deepEqual(parseHttpAddress(':9187'), { host: '127.0.0.1', port: 9187 });
    assert.deepEqual(parseHttpAddress('[::1]:9187'), { host: '::1', port: 9187 });
    assert.deepEqual(parseHttpAddress('0.0.0.0:80'), { host: '0.0.0.0', port: 80 });
    for (const bad of ['127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1:x', '::1:80', 'a b:1', '[::1]x']) {
      assert.throws(() => parseHttpAddress(bad), /--http:/, bad);
    }
  });

  test('loopback: 127.0.0.0/8, ::1 and localhost only', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) assert.equal(isLoopback(h), true, h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '127.example.com', '::ffff:10.0.0.1']) assert.equal(isLoopback(h), false, h);
  });

  test('the port and token are made once, private, and kept; a port given replaces the stored one', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pgbg-http-settings-'));
    try {
      const first = await loadHttpSettings(dir, { host: '127.0.0.1' });
      assert.equal(first.tokenFile, path.join(dir, 'http.token'));
      assert.match(first.token, /^[A-Za-z0-9_-]{43}$/);
      for (const f of ['http.token', 'http.json']) assert.equal((await stat(path.join(dir, f))).mode & 0o777, 0o600, f);
      const again = await loadHttpSettings(dir, { host: '127.0.0.1' });
      assert.deepEqual([again.port, again.token], [first.port, first.token]);
      const moved = await loadHttpSettings(dir, { host: '127.0.0.1', port: 9999 });
      assert.deepEqual([moved.port, moved.token], [9999, first.token]);
      assert.equal(JSON.parse(await readFile(path.join(dir, 'http.json'), 'utf8')).port, 9999);

      // A token file others can read is refused, as every secret file is; one that holds no token too.
      await chmod(first.tokenFile, 0o640);
      await assert.rejects(loadHttpSettings(dir, { host: '127.0.0.1' }), { code: '42501' });
      await chmod(first.tokenFile, 0o600);
      await writeFile(first.tokenFile, 'short\n');
      await assert.rejects(loadHttpSettings(dir, { host: '127.0.0.1' }), /does not hold a token/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
