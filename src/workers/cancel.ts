/**
 * The wire protocol's CancelRequest: a 16-byte packet on a fresh connection to
 * the same server, naming the backend by pid and secret key. It works the same
 * on every platform and needs no privileges; it cancels whatever statement that
 * backend runs when it arrives (so callers must not reuse a connection after
 * sending one — the request may land on the next job).
 */
import net from 'node:net';
import path from 'node:path';
import { serialize } from 'pg-protocol';

export interface ServerAddress {
  host: string;
  port: number;
}

export function sendCancelRequest(address: ServerAddress, pid: number, secretKey: number, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = address.host.startsWith('/')
      ? net.connect(path.join(address.host, `.s.PGSQL.${address.port}`))
      : net.connect(address.port, address.host);
    const timer = setTimeout(() => socket.destroy(new Error('cancel request timed out')), timeoutMs);
    socket.once('connect', () => socket.end(serialize.cancel(pid, secretKey)));
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // The server closes the connection without a reply once it has read the request.
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.resume();
  });
}
