/**
 * The HTTP server under the operators' API (http-api.ts): routing, the bearer
 * token, bounds and JSON errors. Every request is bounded — headers (16 kB,
 * 10 s), the whole request (15 s), a body (4 kB, POST only, read only once the
 * token is checked), connections at once (64). A path under /api, and every
 * route that asks for it, needs `Authorization: Bearer <token>` (compared in
 * constant time) before anything else — an unknown path or method under /api
 * is 401 without it, then 404 or 405. Errors are JSON with a SQLSTATE-style
 * code: `{"error": {"code": "28000", "message": "…"}}`.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { PgbgError, SqlState } from '../protocol/errors.js';

/** An error that is an HTTP answer: its status, and its SQLSTATE in the body. */
export class HttpError extends PgbgError {
  override name = 'HttpError';
  constructor(readonly status: number, code: string, message: string) {
    super(code, message);
  }
}

export interface HttpRequest {
  /** The groups the route's path pattern captured. */
  params: string[];
  query: URLSearchParams;
  /** The body, parsed as JSON (POST only; undefined when empty). */
  body: unknown;
}

export interface HttpAnswer {
  status?: number;
  /** Sent as JSON (bigints as strings, dates as ISO text). */
  json?: unknown;
  /** Sent as is, with `contentType`. */
  text?: string;
  contentType?: string;
}

export type HttpHandler = (req: HttpRequest) => Promise<HttpAnswer> | HttpAnswer;

export interface Route {
  /** Matched against the whole path (no query string). */
  path: RegExp;
  /** Needs the bearer token. */
  auth: boolean;
  methods: Partial<Record<'GET' | 'POST', HttpHandler>>;
}

export interface HttpServerOptions {
  host: string;
  port: number;
  token: string;
  routes: Route[];
  logger: Logger;
  /** @default 4096 */
  maxBodyBytes?: number;
  /** @default 64 */
  maxConnections?: number;
}

export interface HttpServer {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/** SQLSTATE classes and codes → HTTP status, for errors the handlers raise as they are. */
function statusOf(code: string): number {
  if (code === SqlState.undefinedObject) return 404;
  if (code === SqlState.objectNotInPrerequisiteState) return 409;
  if (code.startsWith('22') || code === SqlState.syntaxError) return 400;
  if (code.startsWith('08') || code.startsWith('53') || code.startsWith('57')) return 503;
  return 500;
}

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', ...headers,
  });
  res.end(body);
}

function sendError(res: ServerResponse, err: HttpError, headers: Record<string, string> = {}): void {
  sendJson(res, err.status, { error: { code: err.code, message: err.message } }, headers);
}

/** Reads at most `max` bytes of body; more is 413 (54000). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > max) return Promise.reject(new HttpError(413, SqlState.programLimitExceeded, `the request body is longer than ${max} bytes`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.pause();
        reject(new HttpError(413, SqlState.programLimitExceeded, `the request body is longer than ${max} bytes`));
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    req.on('close', () => {
      if (!req.complete) reject(new HttpError(400, SqlState.connectionFailure, 'the request was cut off'));
    });
  });
}

function parseJson(body: Buffer): unknown {
  if (body.length === 0) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, '22P02', 'the request body is not JSON');
  }
}

export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const { logger, routes } = options;
  const maxBody = options.maxBodyBytes ?? 4096;
  const expected = createHash('sha256').update(options.token).digest();
  const authorized = (header: string | undefined): boolean => {
    const m = /^Bearer ([!-~]{1,1024})$/i.exec(header ?? '');
    // Both sides hashed to one length: the comparison takes the same time whatever was sent.
    const given = createHash('sha256').update(m?.[1] ?? '').digest();
    return timingSafeEqual(given, expected) && m !== null;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://pgbg.invalid');
    const path = url.pathname;
    const route = routes.find((r) => r.path.test(path));
    const needsAuth = route ? route.auth : path === '/api' || path.startsWith('/api/');
    // Without the token nothing else is looked at, not even the body (the connection is closed instead of read).
    if (needsAuth && !authorized(req.headers.authorization)) {
      sendError(res, new HttpError(401, SqlState.invalidAuthorization, 'a bearer token is required (Authorization: Bearer <the token in the server\'s http.token>)'),
        { 'WWW-Authenticate': 'Bearer realm="pgbg"', Connection: 'close' });
      return;
    }
    if (!route) {
      sendError(res, new HttpError(404, SqlState.undefinedObject, `no such path: ${path.slice(0, 200)}`));
      return;
    }
    const method = req.method === 'GET' || req.method === 'POST' ? req.method : undefined;
    const handler = method ? route.methods[method] : undefined;
    if (!handler) {
      sendError(res, new HttpError(405, SqlState.featureNotSupported, `method ${String(req.method).slice(0, 20)} is not allowed here`),
        { Allow: Object.keys(route.methods).join(', '), Connection: 'close' });
      return;
    }
    const body = method === 'POST' ? parseJson(await readBody(req, maxBody)) : undefined;
    const answer = await handler({ params: route.path.exec(path)!.slice(1), query: url.searchParams, body });
    if (answer.text !== undefined) {
      res.writeHead(answer.status ?? 200, { 'Content-Type': answer.contentType ?? 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(answer.text);
    } else {
      sendJson(res, answer.status ?? 200, answer.json ?? {});
    }
  };

  const server = createServer({ requestTimeout: 15_000, headersTimeout: 10_000, keepAliveTimeout: 5000, maxHeaderSize: 16 * 1024 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      let e: HttpError;
      if (err instanceof HttpError) e = err;
      else if (err instanceof PgbgError) e = new HttpError(statusOf(err.code), err.code, err.message);
      else {
        // The message only: errors here come from the server's own reads, never carry SQL text.
        logger.error({ err: (err as Error).message, path: req.url?.split('?')[0]?.slice(0, 200) }, 'HTTP API request failed');
        e = new HttpError(500, SqlState.internalError, 'internal error');
      }
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendError(res, e, e.status === 413 ? { Connection: 'close' } : {});
    }).finally(() => {
      logger.debug({ method: req.method, path: req.url?.split('?')[0]?.slice(0, 200), status: res.statusCode }, 'HTTP request');
    });
  });
  server.maxConnections = options.maxConnections ?? 64;
  server.maxRequestsPerSocket = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`the HTTP API cannot listen on ${options.host}:${options.port}: ${err.code ?? err.message} (give --http HOST:PORT, or --http off)`)));
    server.listen(options.port, options.host, () => resolve());
  });
  server.on('error', (err) => logger.error({ err: err.message }, 'HTTP API server error'));
  const address = server.address() as AddressInfo;
  const host = address.address;
  return {
    host,
    port: address.port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
