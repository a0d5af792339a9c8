/**
 * The HTTP API of `pgbg serve` as a user runs it, on a PostgreSQL of its own
 * that the test stops and starts: the ready output names the URL and the
 * token's file (never the token), the file is private and kept across
 * restarts with the port, /readyz says 503 while PostgreSQL is down and 200
 * once it is back while /healthz stays 200, and `--http off` serves none.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, startEmbeddedPostgres, type EmbeddedServer } from '../../src/embedded/postgres.js';
import { request, until } from '../helpers/http.js';
import { pgbg, startServeProcess, type ServeProcess } from '../helpers/serve-process.js';

const HTTP_LINE = /^ {2}HTTP API: (http:\/\/127\.0\.0\.1:\d+) \(.*bearer token in (\S+);.*\)$/m;

describe('pgbg serve: the HTTP API', () => {
  let dir: string;
  let data: string;
  let port: number;
  let postgres: EmbeddedServer;
  let serve: ServeProcess | undefined;
  let serveArgs: string[];

  const startPostgres = async () => {
    postgres = await startEmbeddedPostgres({ dataDir: path.join(dir, 'pg'), port });
  };
  const startServe = async (extra: string[] = []) => {
    serve = await startServeProcess([...serveArgs, ...extra]);
    return serve;
  };
  const httpOf = async (s: ServeProcess) => {
    const line = await s.waitFor(HTTP_LINE, 30_000);
    const m = HTTP_LINE.exec(line)!;
    return { url: m[1]!, tokenFile: m[2]! };
  };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'pgbg-http-'));
    await chmod(dir, 0o755); // PostgreSQL may run as another OS user (when we are root)
    data = path.join(dir, 'pgbg');
    port = await freePort();
    await startPostgres();
    const url = postgres.url('postgres');
    const pgpass = path.join(dir, 'pgpass');
    await writeFile(pgpass, `127.0.0.1:${port}:*:${postgres.user}:${postgres.password}\n`, { mode: 0o600 });
    pgbg('install', '--database', url, '--data', data);
    serveArgs = ['--database', url, '--pgpass', pgpass, '--data', data, '--log-level', 'debug'];
  });
  after(async () => {
    await serve?.stop();
    await postgres?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the ready output names the URL and the token\'s file; the token stays in it (0600), out of stdout and the log, across restarts', async () => {
    const first = await startServe();
    const { url, tokenFile } = await httpOf(first);
    assert.equal(tokenFile, path.join(data, 'http.token'));
    assert.equal((await stat(tokenFile)).mode & 0o777, 0o600);
    assert.equal((await stat(path.join(data, 'http.json'))).mode & 0o777, 0o600);
    const token = (await readFile(tokenFile, 'utf8')).trim();
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(JSON.parse(await readFile(path.join(data, 'http.json'), 'utf8')).port, Number(new URL(url).port));
    assert.equal((await request(url, 'GET', '/api/status', { token })).status, 200);
    assert.equal((await request(url, 'GET', '/api/status', { token: token.slice(1) })).status, 401);
    assert.equal((await request(url, 'GET', '/metrics', { token })).status, 200);
    await until(async () => first.log().includes('"path":"/metrics"'), 5000, 'the requests logged (debug)');
    for (const where of [first.output(), first.log()]) assert.ok(!where.includes(token) && !where.includes(token.slice(1)), 'the token is not printed');

    assert.equal(await first.stop(), 0);
    const second = await startServe();
    assert.deepEqual(await httpOf(second), { url, tokenFile }, 'the same port and token file');
    assert.equal((await readFile(tokenFile, 'utf8')).trim(), token, 'the same token');
    assert.equal((await request(url, 'GET', '/api/status', { token })).status, 200);
  });

  test('/readyz is 503 while PostgreSQL is down and 200 once it is back; /healthz stays 200', async () => {
    const { url, tokenFile } = await httpOf(serve!);
    const token = (await readFile(tokenFile, 'utf8')).trim();
    assert.equal((await request(url, 'GET', '/readyz')).status, 200);
    await postgres.stop();
    try {
      await until(async () => (await request(url, 'GET', '/readyz')).status === 503, 15_000, '/readyz saying 503');
      const ready = await request(url, 'GET', '/readyz');
      assert.equal(ready.json.status, 'unavailable');
      assert.match(ready.json.reason, /PostgreSQL (is unreachable|refused|did not answer)/);
      assert.match(ready.json.code, /^(08006|57P0[1-3]|57014)$/);
      assert.ok(!ready.text.includes(String(port)), 'no address in an unauthenticated answer');
      assert.equal((await request(url, 'GET', '/healthz')).status, 200);
      const status = await request(url, 'GET', '/api/status', { token });
      assert.equal(status.status, 200, status.text);
      assert.equal(status.json.postgres.ready, false);
      assert.equal(serve!.child.exitCode, null, 'pgbg serve still runs');
    } finally {
      await startPostgres();
    }
    await until(async () => (await request(url, 'GET', '/readyz')).status === 200, 30_000, '/readyz saying 200 again');
  });

  test('--http off: no HTTP API', async () => {
    const { url } = await httpOf(serve!);
    assert.equal(await serve!.stop(), 0);
    const off = await startServe(['--http', 'off']);
    await off.waitFor(/^ {2}the SQL API endpoint listens on/m, 30_000);
    assert.doesNotMatch(off.output(), /HTTP API/);
    const refused = await new Promise<boolean>((resolve) => {
      const socket = net.connect(Number(new URL(url).port), '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('error', () => resolve(true));
    });
    assert.ok(refused, 'nothing listens on the HTTP port');
  });
});
