/**
 * The HTTP + WebSocket edge: /health, /alerts, the auth handshake, heartbeats, inbound
 * validation. It knows nothing about Postgres; the daemon hands it a Hub to register sockets
 * with, a way to start their sync, the /alerts handler and a function reporting the listener's
 * state.
 *
 * This file is the Server class: the connections it holds and their life (upgrade, admission,
 * auth, messages, token expiry, close). Its options and limits are in options.ts, the
 * per-connection record in conn.ts, the heartbeat in heartbeat.ts, the client's address in
 * address.ts, the routes' JSON and admin check in http.ts, the end of a closed socket in close.ts.
 *
 * Why one file: what is left is one class whose methods share its private state (#conns, #opts,
 * #closing, #waiting, #expiries, the log throttles and the per-address budget): the upgrade, the
 * HTTP routes, the event stream and the WebSocket's auth all admit and close through the same
 * #conns, #fail and #gone. Splitting it further would mean giving that state a public face, a
 * change of the class rather than a move.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import type { Socket } from '../delivery/socket.js';
import { SseSocket, streamToken } from './sse.js';
import { verifySessionToken, type Session } from '../auth.js';
import { Deadlines } from './deadlines.js';
import { LogThrottle, skippedNote } from './throttle.js';
import { WaitingRoom, type Waiter } from './waiting.js';
import { WindowLimiter } from './ratelimit.js';
import { CloseCode, ErrorCodes, ReadNotTrackedError, type ErrorCode } from '../errors.js';
import { Subscriber } from '../delivery/hub.js';
import { countsOf } from '../db/changes.js';
import { handleWithFetch } from './node.js';

import { ALERTS_PATHS } from './alerts.js';
import { BAD_TARGET_RESPONSE, requestTarget } from './target.js';
import { originAllowed } from './origin.js';
import { parseClientMessage, type ClientMessage, type ServerMessage } from '../protocol.js';
import type { ServerOptions } from './options.js';
import { newConn, type Conn } from './conn.js';
import { Heartbeat } from './heartbeat.js';
import { budgetAddress, remoteOf } from './address.js';
import { isAdmin, json } from './http.js';
import { endOnceSent } from './close.js';

// What this module exported before its pieces moved out: the daemon and the tests import them from here.
export { DEFAULT_LIMITS, type Limits, type ServerOptions } from './options.js';
export { isPrivateAddress } from './address.js';

export const WS_PATHS = new Set(['/', '/ws']);
/** Error codes that count as refused authentications in the metrics. */
const AUTH_FAILURES = new Set<ErrorCode>(['invalid_token', 'auth_required', 'auth_timeout', 'token_expired', 'token_revoked']);
/** Largest inbound frame. An auth message is the biggest thing a client sends. */
export const MAX_PAYLOAD = 64 * 1024;

/** At most one line per this long for sockets refused at the limits; the summary counts the rest. */
const REFUSAL_LOG_MS = 10_000;

export class Server {
  readonly http: http.Server;
  readonly #wss: WebSocketServer;
  /** Every socket and SSE stream, authenticated or not. */
  readonly #conns = new Map<Socket, Conn>();
  readonly #opts: ServerOptions;
  /** Pings every socket and stream, and ends the ones that stopped answering (see src/server/heartbeat.ts). */
  readonly #heartbeat: Heartbeat;
  #closing = false;
  /** Lines a client can cause, at most one per REFUSAL_LOG_MS each (see src/server/throttle.ts). */
  readonly #authLog = new LogThrottle(REFUSAL_LOG_MS);
  readonly #rateLog = new LogThrottle(REFUSAL_LOG_MS);
  /** Requests, streams and new sockets per user, and requests per address (see Limits). */
  readonly #userRate: WindowLimiter;
  readonly #addressRate: WindowLimiter;
  readonly #originLog = new LogThrottle(REFUSAL_LOG_MS);
  /** Handshakes held while MAX_UNAUTHENTICATED sockets are connecting (see src/server/waiting.ts). */
  readonly #waiting: WaitingRoom;
  /** Every authenticated socket's token deadline (see #scheduleExpiry). */
  readonly #expiries = new Deadlines<Conn>((conn) => this.#expiryDue(conn));
  /**
   * Handlers of every WebSocket's events, shared (EventEmitter calls them with the socket as
   * `this`): closures per socket would cost each idle one a few hundred bytes.
   */
  readonly #wsHandlers: {
    pong: (this: WebSocket) => void;
    message: (this: WebSocket, data: RawData, isBinary: boolean) => void;
    close: (this: WebSocket) => void;
    error: (this: WebSocket, err: Error) => void;
  };

  constructor(opts: ServerOptions) {
    this.#opts = opts;
    this.#userRate = new WindowLimiter(opts.limits.userRateLimit, opts.limits.rateWindowMs);
    this.#addressRate = new WindowLimiter(opts.limits.addressRateLimit, opts.limits.rateWindowMs);
    this.#heartbeat = new Heartbeat(this.#conns, opts);
    const conns = this.#conns;
    const server = this;
    this.#wsHandlers = {
      pong() {
        const conn = conns.get(this);
        if (conn) conn.alive = true;
      },
      message(data, isBinary) {
        const conn = conns.get(this);
        if (conn) server.#onFrame(this, conn, data, isBinary);
      },
      close() {
        const conn = conns.get(this);
        if (conn) server.#gone(this, conn);
      },
      // ws reports protocol violations (oversized frame, bad UTF-8) here, then closes the
      // socket with the matching code (1009, 1007...). Nothing else to do but note it.
      error(err) {
        opts.log.info({ remote: remoteOf(this), err: err.message }, 'WebSocket error');
      },
    };
    // A handshake held too long is let in only to be refused, with the close code a full server gives.
    this.#waiting = new WaitingRoom(
      { size: opts.limits.maxConnections, perAddress: opts.limits.maxUnauthenticatedPerAddress, waitMs: opts.limits.maxWaitMs, bytes: opts.limits.maxWaitingBytes },
      (w) => this.#upgrade(w.req, w.socket, w.head, true),
    );
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.#onRequest(req, res);
    // A request's headers within 10 s and its whole body within 15 s (Node waits 300 s by
    // default, so a slow trickle would hold a connection that no limit counts). Neither applies
    // once a response streams (SSE) or a socket is upgraded.
    const timeouts = { headersTimeout: 10_000, requestTimeout: 15_000 };
    this.http = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key, ...timeouts }, handler) : http.createServer(timeouts, handler);
    if (opts.acceptLimit !== undefined) this.http.maxConnections = opts.acceptLimit;
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: MAX_PAYLOAD, perMessageDeflate: false });
    this.http.on('upgrade', (req, socket, head) => {
      const target = requestTarget(req);
      if (!target) {
        socket.end(BAD_TARGET_RESPONSE);
        return;
      }
      const path = target.pathname;
      const origin = req.headers.origin;
      // Refused before any upgrade: a page from another site cannot open a socket at all.
      const foreign = origin !== undefined && opts.allowedOrigins !== 'any' && !originAllowed(origin, opts.allowedOrigins);
      if (this.#closing || !WS_PATHS.has(path) || foreign) {
        const status = this.#closing ? '503 Service Unavailable' : foreign ? '403 Forbidden' : '404 Not Found';
        if (foreign) this.#originLog.run((skipped) => opts.log.warn({ origin, remote: req.socket.remoteAddress, skipped }, `refused a WebSocket handshake from origin ${origin}${skippedNote(skipped)}`));
        socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        return;
      }
      // At the unauthenticated cap: wait for a place rather than be refused, while there is room.
      // A waiting handshake counts toward MAX_CONNECTIONS: it holds a socket.
      if (opts.limits.maxWaitMs > 0 && this.pendingAuth >= opts.limits.maxUnauthenticated && this.#conns.size + this.#waiting.size < opts.limits.maxConnections) {
        if (this.#waiting.enter(req, socket, head, budgetAddress(req, this.#opts))) return;
      }
      this.#upgrade(req, socket, head, false);
    });
  }

  /** Completes a handshake: the socket is then let in (see #onConnection) or, with `refuse`, refused with 1013. */
  #upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer, refuse: boolean): void {
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      // First, refused or not: a frame ws cannot parse (a refused client may send anything
      // before it reads the close) is an 'error' event, which without a listener would throw.
      ws.on('error', this.#wsHandlers.error);
      if (!refuse) return this.#onConnection(ws, req);
      this.#refused(() => this.#opts.log.warn({ remote: req.socket.remoteAddress, waitedMs: this.#opts.limits.maxWaitMs }, 'refused a WebSocket: no place came free while it waited'));
      this.#fail(ws, 'server_full');
    });
  }

  /** Lets waiting handshakes in while there are places. */
  #admit(): void {
    const { limits } = this.#opts;
    while (this.#waiting.size > 0 && !this.#closing && this.pendingAuth < limits.maxUnauthenticated && this.#conns.size < limits.maxConnections) {
      const w: Waiter | undefined = this.#waiting.next();
      if (!w) break;
      this.#upgrade(w.req, w.socket, w.head, false);
    }
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'EADDRINUSE' ? new Error(`PORT ${this.#opts.port} is already in use; set PORT to a free port`) : err),
      );
      this.http.listen({ port: this.#opts.port, host: this.#opts.host, backlog: this.#opts.listenBacklog ?? 4096 }, () => {
        this.http.removeAllListeners('error');
        resolve();
      });
    });
    this.#heartbeat.start();
    return this.http.address() as AddressInfo;
  }

  /** Sockets that have not authenticated yet. */
  get pendingAuth(): number {
    return this.#conns.size - this.#opts.hub.connections;
  }

  /** What /health says of this process: the listener, the sockets, the waiting room. */
  health(): { status: 'ok' | 'degraded'; connections: number; timestamp: string; [k: string]: unknown } {
    const listener = this.#opts.listenerStatus();
    const ok = listener.state === 'connected' && listener.probe?.ok !== false && !this.#closing;
    return {
      status: ok ? 'ok' : 'degraded',
      connections: this.#opts.hub.connections,
      timestamp: new Date().toISOString(),
      listener,
      pendingAuth: this.#conns.size - this.#opts.hub.connections,
      waiting: this.#waiting.size,
      waitingBytes: this.#waiting.bytes,
      notifyQueueUsage: this.#opts.queueUsage(),
      uptimeSeconds: Math.round(process.uptime()),
    };
  }

  /** Refuses new sockets (503) while the open ones get what is still being delivered. */
  stopAccepting(): void {
    this.#closing = true;
    for (const w of this.#waiting.drain()) w.socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  }

  /** Stops accepting, closes every socket with 1001, waits (bounded) for them to go. */
  async close(timeoutMs = 3000): Promise<void> {
    this.stopAccepting();
    this.#heartbeat.stop();
    this.#expiries.clear();
    const httpClosed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    for (const ws of this.#conns.keys()) ws.close(CloseCode.GoingAway, 'server shutting down');
    const deadline = Date.now() + timeoutMs;
    while (this.#conns.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const ws of this.#conns.keys()) ws.terminate();
    this.http.closeAllConnections();
    await httpClosed;
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const target = requestTarget(req);
    if (!target) return json(res, 400, { error: 'bad_request', message: 'the request target does not parse' });
    const path = target.pathname;
    const alertsRoute = ALERTS_PATHS.has(path);
    if (alertsRoute || path === '/alerts/stream') {
      const address = budgetAddress(req, this.#opts);
      if (address !== null && !this.#addressRate.take(address)) return this.#tooMany(res, 'address', address, this.#addressRate.retryAfter(address));
    }
    if (path === '/alerts/stream') {
      this.#onStream(req, res, target).catch((err) => {
        this.#opts.log.error({ err }, 'error while opening an /alerts/stream');
        if (!res.headersSent) json(res, 500, { error: 'internal', message: 'internal error' });
        else res.destroy();
      });
      return;
    }
    if (alertsRoute) {
      handleWithFetch(req, res, this.#opts.alerts).catch((err) => {
        this.#opts.log.error({ err }, 'error while handling an /alerts request');
        if (!res.headersSent) json(res, 500, { error: 'internal', message: 'internal error' });
        else res.destroy();
      });
      return;
    }
    if (path === '/metrics' && this.#opts.metrics) {
      if (!isAdmin(req, this.#opts)) return json(res, 401, { error: 'unauthorized', message: 'send Authorization: Bearer <ADMIN_TOKEN>' });
      (this.#opts.machine ? this.#opts.machine.metrics() : this.#opts.metrics.text()).then(
        (text) => {
          res.writeHead(200, { 'content-type': this.#opts.metrics!.registry.contentType, 'cache-control': 'no-store' });
          res.end(text);
        },
        () => json(res, 500, { error: 'internal', message: 'could not collect metrics' }),
      );
      return;
    }
    if (path === '/health') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'method_not_allowed', message: 'use GET /health' });
      const local = this.health();
      const ok = local.status === 'ok';
      // A load balancer needs only the status; the rest (counts, the listener's problem) is the operator's.
      if (!isAdmin(req, this.#opts)) return json(res, ok ? 200 : 503, { status: local.status, timestamp: local.timestamp });
      if (!this.#opts.machine) return json(res, ok ? 200 : 503, local);
      // A worker of `pgbell start --workers N`: the details are the whole machine's.
      this.#opts.machine.health().then(
        (machine) => json(res, machine.status === 'ok' ? 200 : 503, machine),
        () => json(res, 500, { error: 'internal', message: 'could not ask the other workers' }),
      );
      return;
    }
    json(res, 404, { error: 'not_found', message: `no route for ${req.method} ${path}; try GET /health, GET /alerts or a WebSocket on /` });
  }

  /**
   * GET /alerts/stream (Server-Sent Events): the WebSocket's messages over one HTTP response,
   * with the same auth, resume, limits and close reasons (see src/server/sse.ts). Refusals come
   * as HTTP statuses before the stream starts: 401 bad token, 403 origin, 400 bad parameters,
   * 503 at the connection limit or shutting down.
   */
  async #onStream(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const { log, limits, allowedOrigins } = this.#opts;
    if (req.method !== 'GET') return json(res, 405, { error: 'method_not_allowed', message: 'GET /alerts/stream' });
    const origin = req.headers.origin;
    if (origin !== undefined && allowedOrigins !== 'any' && !originAllowed(origin, allowedOrigins)) {
      this.#originLog.run((skipped) => log.warn({ origin, remote: req.socket.remoteAddress, skipped }, `refused an event stream from origin ${origin}${skippedNote(skipped)}`));
      return json(res, 403, { error: 'forbidden_origin', message: `origin ${origin} is not in ALLOWED_ORIGINS` });
    }
    if (this.#closing || this.#conns.size >= limits.maxConnections) {
      res.setHeader('retry-after', '1');
      return json(res, 503, { error: 'server_full', message: ErrorCodes.server_full.message });
    }
    const token = streamToken(req, url);
    if (!token) return json(res, 401, { error: 'unauthorized', message: 'send Authorization: Bearer <token>, or ?token=<token> (EventSource cannot send headers)' });
    // The same validation as the socket's auth message: Last-Event-ID (or ?after=) is `after`.
    const after = (req.headers['last-event-id'] as string | undefined) || url.searchParams.get('after') || undefined;
    const types = url.searchParams.get('types')?.split(',').filter(Boolean);
    const batch = ['1', 'true'].includes(url.searchParams.get('batch') ?? '');
    const parsed = parseClientMessage(JSON.stringify({ type: 'auth', token, ...(after ? { after } : {}), ...(types ? { types } : {}), ...(batch ? { batch } : {}) }));
    if (!parsed.ok || parsed.message.type !== 'auth') return json(res, 400, { error: 'bad_request', message: parsed.ok ? 'bad request' : parsed.reason });
    const verified = await verifySessionToken(token, this.#opts.keys, { leewaySeconds: this.#opts.leewaySeconds });
    if (!verified.ok) {
      this.#opts.metrics?.authFailure('invalid_token');
      this.#authLog.run((skipped) => log.warn({ reason: verified.reason, skipped }, `event stream authentication failed: ${verified.reason}${skippedNote(skipped)}`));
      // The reason is the operator's to read (the log), not the client's: it would say which
      // check a forged token failed.
      return json(res, 401, { error: 'unauthorized', message: 'Invalid session token' });
    }
    // A page of an allowed origin reads the stream with EventSource: CORS, as for /alerts.
    const cors: Record<string, string> = origin !== undefined ? { 'access-control-allow-origin': allowedOrigins === 'any' ? '*' : origin, vary: 'Origin' } : {};
    const sock = new SseSocket(res, cors);
    const conn = newConn(sock);
    sock.onPong = () => (conn.alive = true);
    this.#conns.set(sock, conn);
    res.once('close', () => this.#gone(sock, conn));
    const msg = parsed.message;
    const auth = this.#authenticate(sock, conn, msg.token, msg.after ?? null, msg.types ?? [], msg.batch ?? false);
    conn.queue = auth;
    await auth;
    if (conn.queue === auth) conn.queue = null;
  }

  /** Counts a request, stream or new socket of `userId`: null if allowed, else seconds to wait. */
  admitUser(userId: string): number | null {
    if (this.#userRate.take(userId)) return null;
    this.#rateLog.run((skipped) => this.#opts.log.warn({ userId, skipped }, `refused user ${userId}: more than ${this.#opts.limits.userRateLimit} requests, streams or new sockets in ${this.#opts.limits.rateWindowMs} ms${skippedNote(skipped)}`));
    return this.#userRate.retryAfter(userId);
  }

  #tooMany(res: http.ServerResponse, what: string, key: string, retryAfter: number): void {
    this.#rateLog.run((skipped) => this.#opts.log.warn({ [what]: key, skipped }, `refused ${what} ${key}: more than ${this.#opts.limits.addressRateLimit} requests in ${this.#opts.limits.rateWindowMs} ms${skippedNote(skipped)}`));
    res.setHeader('retry-after', String(retryAfter));
    json(res, 429, { error: 'rate_limited', message: `too many requests from this ${what}; retry later` });
  }

  /** A socket or stream closed: forget it and its subscriber. */
  #gone(ws: Socket, conn: Conn): void {
    clearTimeout(conn.authTimer);
    conn.authTimer = undefined;
    this.#releaseAddress(conn);
    this.#expiries.cancel(conn);
    this.#conns.delete(ws);
    if (conn.sub) {
      this.#opts.hub.remove(conn.sub);
      this.#opts.unsubscribe?.(conn.sub);
    }
    this.#admit();
  }

  #onConnection(ws: WebSocket, req: http.IncomingMessage): void {
    const { log, authTimeoutMs } = this.#opts;
    const remote = req.socket.remoteAddress;
    // Per-socket lines are debug: a reconnect storm would write 10,000 of them (the info
    // summary counts authentications).
    if (log.isLevelEnabled('debug')) log.debug({ remote }, 'New WebSocket connection attempt');
    const conn = newConn(ws);
    const { limits } = this.#opts;
    const pending = this.#conns.size - this.#opts.hub.connections;
    if (this.#conns.size >= limits.maxConnections || pending >= limits.maxUnauthenticated) {
      this.#refused(() => log.warn({ remote, connections: this.#conns.size, pendingAuth: pending }, 'refused a WebSocket: at the connection limit'));
      return this.#fail(ws, 'server_full');
    }
    // One address may not hold the whole unauthenticated budget (a client opening sockets it
    // never authenticates would starve every newcomer).
    const address = budgetAddress(req, this.#opts);
    if (address !== null && limits.maxUnauthenticatedPerAddress > 0) {
      const n = this.#pendingByAddress.get(address) ?? 0;
      if (n >= limits.maxUnauthenticatedPerAddress) {
        this.#refused(() => log.warn({ remote, address, pendingAuth: n }, `refused a WebSocket: ${n} sockets from ${address} have not authenticated yet`));
        return this.#fail(ws, 'server_full');
      }
      this.#pendingByAddress.set(address, n + 1);
      conn.pendingAddress = address;
    }
    this.#conns.set(ws, conn);
    // The auth deadline. A loop that stalled (a reconnect storm's burst of handshakes, a paused
    // process) runs its due timers before it reads its sockets: judging at once would cut
    // sockets whose auth message is already here. So the verdict waits for the loop's next
    // check phase, after it has read what arrived; a socket whose message came in time gets one
    // more period for its verification, then is cut like any other.
    const judge = () =>
      setImmediate(() => {
        if (conn.session || !this.#conns.has(ws)) return;
        if (conn.spoke && !conn.extended) {
          conn.extended = true;
          conn.authTimer = setTimeout(judge, authTimeoutMs);
          return;
        }
        this.#authLog.run((skipped) => log.warn({ remote, reason: 'auth_timeout', skipped }, `WebSocket authentication failed: ${conn.spoke ? 'not authenticated' : 'no auth message'} within ${authTimeoutMs} ms${skippedNote(skipped)}`));
        this.#fail(ws, 'auth_timeout');
      });
    conn.authTimer = setTimeout(judge, authTimeoutMs);
    const h = this.#wsHandlers;
    ws.on('pong', h.pong);
    ws.on('message', h.message);
    ws.on('close', h.close);
  }

  /** A frame from a socket: counted against its rate limit, then handled after the ones before it. */
  #onFrame(ws: WebSocket, conn: Conn, data: RawData, isBinary: boolean): void {
    const { limits, log } = this.#opts;
    if (conn.limited) return;
    const now = Date.now();
    if (now - conn.windowStart >= limits.rateWindowMs) {
      conn.windowStart = now;
      conn.messages = 0;
    }
    if (++conn.messages > limits.rateLimit) {
      conn.limited = true;
      log.warn({ remote: remoteOf(ws), userId: conn.session?.userId }, `closed a WebSocket that sent more than ${limits.rateLimit} messages in ${limits.rateWindowMs} ms`);
      return this.#fail(ws, 'rate_limited');
    }
    const next = (conn.queue ?? Promise.resolve())
      .then(() => this.#onMessage(ws, conn, data, isBinary))
      .catch((err) => {
        log.error({ err }, 'error while handling a WebSocket message');
      })
      // An idle socket keeps no settled promise.
      .finally(() => {
        if (conn.queue === next) conn.queue = null;
      });
    conn.queue = next;
  }

  async #onMessage(ws: WebSocket, conn: Conn, data: RawData, isBinary: boolean): Promise<void> {
    if (ws.readyState !== ws.OPEN) return;
    if (isBinary) return this.#send(ws, { type: 'error', code: 'bad_message', message: 'binary frames are not supported; send JSON text' });
    const parsed = parseClientMessage(rawToString(data));
    if (!parsed.ok) return this.#send(ws, { type: 'error', code: 'bad_message', message: parsed.reason });
    const msg: ClientMessage = parsed.message;
    if (msg.type === 'auth') {
      // Its verification is under way: the auth deadline gives it one more period (see judge).
      if (!conn.session) conn.spoke = true;
      return this.#authenticate(ws, conn, msg.token, msg.after ?? null, msg.types ?? [], msg.batch ?? false);
    }
    if (!conn.session) {
      this.#authLog.run((skipped) => this.#opts.log.warn({ reason: 'auth_required', got: msg.type, skipped }, `WebSocket authentication failed: first message was not auth${skippedNote(skipped)}`));
      return this.#fail(ws, 'auth_required');
    }
    if (msg.type === 'ping') return this.#send(ws, { type: 'pong' });
    if (msg.type === 'subscribe') {
      const sub = conn.sub!;
      sub.types = msg.types.length === 0 ? null : new Set(msg.types);
      try {
        sub.byType = await this.#opts.counts(sub.userId);
      } catch (err) {
        this.#opts.log.warn({ err: (err as Error).message }, 'counting unread alerts failed');
      }
      return this.#send(ws, { type: 'subscribed', types: [...(sub.types ?? [])], ...countsOf(sub.byType, sub.types) });
    }
    if (msg.type === 'read') {
      try {
        await this.#opts.markRead(conn.session.userId, msg.all ? { all: true } : { ids: msg.ids! });
      } catch (err) {
        if (err instanceof ReadNotTrackedError) {
          this.#send(ws, { type: 'error', code: 'read_not_tracked', message: ErrorCodes.read_not_tracked.message });
          return;
        }
        this.#opts.log.warn({ err: (err as Error).message }, 'marking alerts read failed');
        this.#send(ws, { type: 'error', code: 'unavailable', message: ErrorCodes.unavailable.message });
      }
    }
  }

  async #authenticate(ws: Socket, conn: Conn, token: string, after: string | null, types: string[], batch: boolean): Promise<void> {
    const { log, hub, keys } = this.#opts;
    const result = await verifySessionToken(token, keys, { leewaySeconds: this.#opts.leewaySeconds });
    if (ws.readyState !== ws.OPEN) return;
    if (!result.ok) {
      this.#authLog.run((skipped) => log.warn({ reason: result.reason, skipped }, `WebSocket authentication failed: ${result.reason}${skippedNote(skipped)}`));
      return this.#fail(ws, 'invalid_token');
    }
    const session = result.session;
    let revoked: number | null;
    try {
      revoked = await this.#opts.revokedBefore(session.userId);
    } catch (err) {
      // Cannot tell whether the token was revoked: refuse for now, the client retries.
      log.warn({ err: (err as Error).message }, 'WebSocket authentication failed: could not check revocations');
      this.#send(ws, { type: 'error', code: 'unavailable', message: ErrorCodes.unavailable.message });
      ws.close(CloseCode.TryAgainLater, 'unavailable');
      endOnceSent(ws);
      return;
    }
    if (ws.readyState !== ws.OPEN) return;
    if (revoked !== null && session.iat <= revoked) {
      this.#authLog.run((skipped) => log.warn({ userId: session.userId, reason: 'revoked', skipped }, `WebSocket authentication failed: sessions of user ${session.userId} were revoked${skippedNote(skipped)}`));
      return this.#fail(ws, 'token_revoked');
    }
    if (conn.session && conn.session.userId !== session.userId) {
      this.#authLog.run((skipped) => log.warn({ reason: 'user_changed', userId: conn.session!.userId, skipped }, `WebSocket authentication failed: token is for another user${skippedNote(skipped)}`));
      return this.#fail(ws, 'invalid_token');
    }
    conn.session = session;
    this.#releaseAddress(conn);
    clearTimeout(conn.authTimer);
    conn.authTimer = undefined;
    this.#scheduleExpiry(ws, conn, session);
    if (conn.sub) {
      // A fresh token on an open socket: the stream goes on; `after` is not re-read.
      this.#send(ws, { type: 'ready', userId: session.userId, email: session.email, ...countsOf(conn.sub.byType, conn.sub.types) });
      return;
    }
    if (hub.countFor(session.userId) >= this.#opts.limits.maxPerUser) {
      log.warn({ userId: session.userId }, `refused a WebSocket of user ${session.userId}: already ${this.#opts.limits.maxPerUser} connections`);
      return this.#fail(ws, 'too_many_connections');
    }
    // Each new socket or stream costs a sync read: a loop of reconnects from an old cursor
    // would otherwise cost the database without bound.
    if (this.admitUser(session.userId) !== null) return this.#fail(ws, 'rate_limited');
    conn.sub = new Subscriber(ws, session.userId, session.email, after, this.#opts.limits.maxBufferedBytes, this.#onSlow);
    if (types.length > 0) conn.sub.types = new Set(types);
    conn.sub.batch = batch;
    hub.add(conn.sub);
    this.#admit();
    this.#opts.metrics?.authenticated();
    if (log.isLevelEnabled('debug')) log.debug({ userId: session.userId, email: session.email }, `User ${session.userId} (${session.email ?? 'no email'}) authenticated via WebSocket`);
    // Later messages from this socket wait until it is live (its queue awaits this).
    try {
      await this.#opts.subscribe(conn.sub);
    } catch (err) {
      // Neither live nor closed, it would wait for ever: closed, its client goes elsewhere.
      this.#refused(() => log.warn({ userId: session.userId, err: (err as Error).message }, `refused a socket of user ${session.userId}: ${(err as Error).message}`));
      this.#fail(ws, 'node_unavailable');
    }
  }

  /** When a refusal at the limits was last logged on its own line. */
  #refusalLoggedAt = -Infinity;

  /**
   * A socket refused at the connection limits: counted for the summary line, and written on a
   * line of its own only for the first of a burst (a reconnect storm refuses thousands).
   */
  #refused(logLine: () => void): void {
    const tally = this.#opts.metrics?.tally;
    if (tally) tally.refused++;
    const now = performance.now();
    if (!tally || now - this.#refusalLoggedAt >= REFUSAL_LOG_MS) {
      this.#refusalLoggedAt = now;
      logLine();
    }
  }

  /** A subscriber closed as a slow consumer (shared by all: see Conn). */
  readonly #onSlow = (sub: Subscriber): void => {
    this.#opts.metrics?.slowConsumer();
    this.#opts.log.warn({ userId: sub.userId, buffered: sub.ws.bufferedAmount }, `closed a slow consumer of user ${sub.userId} (more than ${this.#opts.limits.maxBufferedBytes} bytes unsent)`);
  };

  /** Expiry is enforced on open sockets: a warning ahead of `exp`, then 4401 unless a new token came. */
  #scheduleExpiry(_ws: Socket, conn: Conn, session: Session): void {
    conn.expiryStage = 'warn';
    this.#expiries.set(conn, (session.exp - this.#opts.expiringSeconds) * 1000);
  }

  /** A socket's token deadline came (see #scheduleExpiry): the warning, then the close. */
  #expiryDue(conn: Conn): void {
    const session = conn.session;
    if (!session || !this.#conns.has(conn.socket)) return;
    if (conn.expiryStage === 'warn') {
      this.#send(conn.socket, { type: 'token_expiring', exp: session.exp });
      conn.expiryStage = 'close';
      this.#expiries.set(conn, (session.exp + this.#opts.leewaySeconds) * 1000);
      return;
    }
    this.#opts.log.info({ userId: session.userId }, `closed a WebSocket of user ${session.userId}: token expired`);
    this.#fail(conn.socket, 'token_expired');
  }

  /** Closes every socket and stream with `code` (this node cannot serve them: see node_unavailable); how many. */
  closeAll(code: ErrorCode): number {
    const all = [...this.#conns.keys()];
    for (const ws of all) this.#fail(ws, code);
    return all.length;
  }

  /** Closes (4403) every socket of `userId` whose token was issued before `before` (epoch seconds; the same second counts, as `iat` has no finer grain). */
  revoke(userId: string, before: number): number {
    let n = 0;
    for (const [ws, conn] of this.#conns) {
      if (conn.session?.userId === userId && conn.session.iat <= before) {
        this.#fail(ws, 'token_revoked');
        n++;
      }
    }
    if (n > 0) this.#opts.log.info({ userId, sockets: n }, `revoked: closed ${n} sockets of user ${userId}`);
    return n;
  }

  /** Unauthenticated sockets per client address (see budgetAddress in src/server/address.ts). */
  readonly #pendingByAddress = new Map<string, number>();

  #releaseAddress(conn: Conn): void {
    const address = conn.pendingAddress;
    if (address === undefined) return;
    conn.pendingAddress = undefined;
    const n = (this.#pendingByAddress.get(address) ?? 1) - 1;
    if (n > 0) this.#pendingByAddress.set(address, n);
    else this.#pendingByAddress.delete(address);
  }

  /** Users with an authenticated socket, for re-checking revocations after a listener gap. */
  userIds(): string[] {
    return [...new Set([...this.#conns.values()].flatMap((c) => (c.session ? [c.session.userId] : [])))];
  }

  #send(ws: Socket, msg: ServerMessage): void {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(msg));
  }

  /** Error message, then the close code the error table assigns, and the socket ended (see endOnceSent). */
  #fail(ws: Socket, code: ErrorCode): void {
    const entry = ErrorCodes[code];
    if (AUTH_FAILURES.has(code)) this.#opts.metrics?.authFailure(code);
    if (entry.close !== null) this.#opts.metrics?.closed(code);
    this.#send(ws, { type: 'error', code, message: entry.message });
    if (entry.close === null) return;
    ws.close(entry.close, code);
    endOnceSent(ws);
  }
}

function rawToString(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

