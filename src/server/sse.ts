/**
 * GET /alerts/stream: the same messages as the WebSocket, as Server-Sent Events, for anything
 * that can read an HTTP response (curl -N, a backend in another language, a browser behind a
 * proxy that refuses WebSocket upgrades). Each message is one event:
 *
 *   event: <the message's type>
 *   id: <the message's cursor, when it has one>
 *   data: <the JSON object the WebSocket would send>
 *
 * A browser's EventSource sends the last id back as Last-Event-ID when it reconnects: that is
 * the socket's `after`, so a reconnect resumes exactly. An SseSocket stands in for a ws
 * WebSocket (the Socket interface) so that the server's auth, limits, expiry, revocation,
 * heartbeats and shutdown, and the hub's slow-consumer bound, treat both alike.
 */
import type http from 'node:http';
import type { Socket } from '../delivery/socket.js';

/** How long a browser waits before reconnecting a dropped stream (the `retry:` field). */
export const SSE_RETRY_MS = 2000;

const TYPE = /^\{"type":"([a-z_]+)"/;
/**
 * The message's own cursor is its last "cursor" field: frames put it after the alert (whose
 * `data` could hold a key of that name), and `synced` carries no alert.
 */
const CURSOR = /"cursor":"([^"]*)"/g;

export class SseSocket implements Socket {
  readonly OPEN = 1;
  #state = 1;
  /**
   * Called once a heartbeat comment has left for the network, the stream's stand-in for a pong
   * (see ping()).
   */
  onPong: () => void = () => {};

  /** `headers`: extra response headers (CORS for an allowed page origin). */
  constructor(
    private readonly res: http.ServerResponse,
    headers: Record<string, string> = {},
  ) {
    res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      // nginx and similar proxies would otherwise buffer the stream.
      'x-accel-buffering': 'no',
    });
    res.write(`retry: ${SSE_RETRY_MS}\n\n`);
    res.once('close', () => (this.#state = 3));
  }

  get readyState(): number {
    return this.#state;
  }

  get bufferedAmount(): number {
    return this.res.writableLength;
  }

  /** `data` is one server message as JSON text (as the WebSocket would send it). */
  send(data: string): void {
    if (this.#state !== 1) return;
    const type = TYPE.exec(data)?.[1] ?? 'message';
    let id: string | undefined;
    for (const m of data.matchAll(CURSOR)) id = m[1];
    this.res.write(`event: ${type}\n${id ? `id: ${id}\n` : ''}data: ${data}\n\n`);
  }

  /** Ends the stream with a `close` event carrying the code a WebSocket would have been closed with. */
  close(code = 1000, reason = ''): void {
    if (this.#state !== 1) return;
    this.res.write(`event: close\ndata: ${JSON.stringify({ code, reason })}\n\n`);
    this.#state = 2;
    this.res.end();
  }

  terminate(): void {
    this.#state = 3;
    this.res.destroy();
  }

  /**
   * A heartbeat comment; its write callback is the pong. The callback runs once the kernel has
   * taken the comment, so only after everything written before it: a peer that stopped reading
   * (or whose network went away with output in flight) leaves its backlog undrained, sends no
   * pong, and the server's heartbeat terminates the stream after a whole interval, as it does a
   * WebSocket that missed its pong. Calling back at once, as before, kept such streams for as
   * long as TCP kept the connection (about 15 minutes), counted toward their user's limit.
   */
  ping(): void {
    if (this.#state !== 1) return;
    this.res.write(': heartbeat\n\n', (err) => {
      if (!err) this.onPong();
    });
  }
}

/** The token of a stream request: `Authorization: Bearer …`, else `?token=` (EventSource cannot send headers). */
export function streamToken(req: http.IncomingMessage, url: URL): string | null {
  const header = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
  return header ?? url.searchParams.get('token');
}
