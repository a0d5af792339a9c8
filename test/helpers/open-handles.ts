/**
 * Preloaded into every test file's process (test/run.ts). The runner passes
 * `--test-force-exit`, so a file whose tests left a socket, a listening server
 * or a child process open would exit anyway and the leak go unseen. At exit
 * (after every test and hook of the file) this records any such handle for the
 * runner, which fails the run naming the file. Timers are not counted: some
 * pending ones are the library's own (bounded waits it races against).
 */
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { LEAKS_FILE } from './leaks.js';

const LEAKY = new Set(['TCPSocketWrap', 'TCPServerWrap', 'PipeServerWrap', 'ProcessWrap', 'UDPWrap', 'TLSWrap', 'HTTPINCOMINGMESSAGE']);

process.on('exit', () => {
  const open = process.getActiveResourcesInfo().filter((r) => LEAKY.has(r));
  if (open.length === 0) return;
  const counts = [...new Set(open)].map((r) => `${open.filter((x) => x === r).length} ${r}`).join(', ');
  const file = path.relative(path.resolve(import.meta.dirname, '../..'), process.argv[1] ?? '?');
  const line = `handles left open when ${file} ended: ${counts}`;
  process.stderr.write(`LEAK: ${line}\n`);
  const leaks = process.env[LEAKS_FILE];
  if (leaks) appendFileSync(leaks, line + '\n');
});
