/**
 * What the HTTP routes share: a JSON answer, and the ADMIN_TOKEN check in front of /metrics
 * and /health's details. Separate from server.ts: pure
 * functions of a request or a response, needing none of the Server's state.
 */
import { timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { ServerOptions } from './options.js';

/** No ADMIN_TOKEN, or the request carries it. */
export function isAdmin(req: http.IncomingMessage, opts: Pick<ServerOptions, 'adminToken'>): boolean {
  const want = opts.adminToken;
  if (want === undefined) return true;
  const got = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
  const a = Buffer.from(got);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
