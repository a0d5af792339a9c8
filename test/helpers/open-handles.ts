/**
 * Preloaded into every test file's process (test/run.ts). The runner passes
 * `--test-force-exit`, so a file whose tests left a TCP connection, a
 * listening server or a child process open would exit anyway and the leak go
 * unseen. At exit (after every test and hook of the file) this records any
 * such handle still open for the runner, which fails the run naming the file.
 * Handles being closed (a server whose close() resolved, a destroyed socket)
 * are not leaks; timers are not counted either: some pending ones are the
 * library's own (bounded waits it races against).
 */
import { ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { LEAKS_FILE } from './leaks.js';

/** Node's list of the handles that keep the process alive (long present, though undocumented). */
const activeHandles = (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles;

function openHandles(): string[] {
  if (typeof activeHandles !== 'function') {
    // Without it, only the kinds (a closing handle cannot be told from an open one here).
    return process.getActiveResourcesInfo().filter((r) => ['TCPSocketWrap', 'TCPServerWrap', 'ProcessWrap'].includes(r));
  }
  const open: string[] = [];
  for (const h of activeHandles.call(process)) {
    if (h === process.stdin || h === process.stdout || h === process.stderr) continue;
    if (h instanceof net.Server) {
      if (h.listening) open.push(`a server listening on ${JSON.stringify(h.address())}`);
    } else if (h instanceof net.Socket) {
      if (!h.destroyed && h.remotePort !== undefined) open.push(`a connection ${h.localAddress}:${h.localPort} → ${h.remoteAddress}:${h.remotePort}`);
    } else if (h instanceof ChildProcess) {
      if (h.exitCode === null && h.signalCode === null) open.push(`child process ${h.pid} (${h.spawnfile})`);
    }
  }
  return open;
}

process.on('exit', () => {
  const open = openHandles();
  if (open.length === 0) return;
  const file = path.relative(path.resolve(import.meta.dirname, '../..'), process.argv[1] ?? '?');
  const line = `left open when ${file} ended: ${open.join('; ')}`;
  process.stderr.write(`LEAK: ${line}\n`);
  const leaks = process.env[LEAKS_FILE];
  if (leaks) appendFileSync(leaks, line + '\n');
});
