/**
 * Which address a client is: the one its unauthenticated budget and its request rate are
 * counted under (behind trusted proxies, the X-Forwarded-For entry they vouch for), and a
 * WebSocket's peer address for logs. Separate from server.ts: pure
 * functions of a request or a socket, needing none of the Server's state.
 */
import type http from 'node:http';
import type { WebSocket } from 'ws';
import { netSocketOf } from '../delivery/hub.js';
import type { ServerOptions } from './options.js';

/** Loopback, private (RFC 1918), link-local and unique-local addresses, IPv4 (also IPv4-mapped) and IPv6. */
export function isPrivateAddress(address: string): boolean {
  const a = address.replace(/^::ffff:/, '');
  if (/^(127\.|10\.|192\.168\.|169\.254\.)/.test(a)) return true;
  const m = /^172\.(\d+)\./.exec(a);
  if (m && Number(m[1]) >= 16 && Number(m[1]) <= 31) return true;
  return a === '::1' || /^f[cd][0-9a-f]{2}:/i.test(a) || /^fe80:/i.test(a);
}

/**
 * The address a socket's unauthenticated budget is counted under, or null for none. With
 * trusted proxies, the X-Forwarded-For entry they vouch for. Without, the peer address, except
 * a loopback or private one: that is where a proxy sits, and counting it would put every
 * user behind it into one budget (set TRUST_PROXY_HOPS there).
 */
export function budgetAddress(req: http.IncomingMessage, opts: Pick<ServerOptions, 'trustProxyHops'>): string | null {
  const hops = opts.trustProxyHops ?? 0;
  const peer = req.socket.remoteAddress ?? '';
  if (hops > 0) {
    const forwarded = String(req.headers['x-forwarded-for'] ?? '')
      .split(',')
      .map((a) => a.trim())
      .filter(Boolean);
    return forwarded[forwarded.length - hops] ?? peer;
  }
  return isPrivateAddress(peer) ? null : peer;
}

/** The peer address of a WebSocket, for logs. */
export function remoteOf(ws: WebSocket): string | undefined {
  return netSocketOf(ws)?.remoteAddress;
}
