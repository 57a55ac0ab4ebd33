/**
 * A browser tab under chaos: it keeps its own model of the bell (alert id → read state, the last
 * unread count) from what the server sends, reconnects with its own jittered backoff to any
 * node, resumes from its last cursor, and records every breach of the promise as it happens:
 * an alert of another user, an alert of a type it did not subscribe to, a new alert sent twice
 * on one connection, a reset. Some tabs batch, some filter by type, some hold tokens that expire
 * mid-run (and either re-authenticate on `token_expiring` or get closed with 4401 and resume).
 */
import WebSocket from 'ws';
import { secretKey, signSessionToken } from '../../src/auth.js';

export interface TabOptions {
  id: number;
  userId: string;
  secret: string;
  /** Where to connect: one of these, at random, each time. */
  urls: () => string[];
  types: string[] | null;
  batch: boolean;
  /** Token lifetime in seconds. */
  ttlSeconds: number;
  /** Answer `token_expiring` with a fresh token (else the server closes with 4401 and the tab resumes). */
  refresh: boolean;
  random: () => number;
  /** First receipt of an alert id: for catch-up times. */
  onReceived: (alertId: string, at: number) => void;
  /**
   * How many times the writers re-inserted an id (deleted and inserted it in one transaction)
   * or moved it between users: each may make it a new alert again on a live connection.
   */
  renewed?: ReadonlyMap<string, number>;
}

export class ChaosTab {
  /** The bell as this tab sees it: alert id → read. */
  readonly alerts = new Map<string, boolean>();
  /** Each alert's data as last sent. */
  readonly data = new Map<string, unknown>();
  unread = 0;
  cursor: string | undefined;
  readonly violations: string[] = [];
  connections = 0;
  synced = false;
  expiredCloses = 0;
  refreshed = 0;
  #ws: WebSocket | null = null;
  #stopped = false;
  #attempt = 0;
  #paused: NodeJS.Timeout | undefined;

  constructor(readonly o: TabOptions) {}

  start(): void {
    void this.#loop();
  }

  /** Stops reading for `ms` (a slow consumer): the server's buffer for it fills. */
  pause(ms: number): void {
    const socket = (this.#ws as unknown as { _socket?: { pause(): void; resume(): void } } | null)?._socket;
    if (!socket) return;
    socket.pause();
    clearTimeout(this.#paused);
    this.#paused = setTimeout(() => socket.resume(), ms);
  }

  /** Drops the connection without a goodbye; the tab reconnects with its backoff and resumes. */
  drop(): void {
    this.#ws?.terminate();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#paused);
    this.#ws?.terminate();
  }

  async #token(): Promise<string> {
    return signSessionToken(secretKey(this.o.secret), { userId: this.o.userId, ttlSeconds: this.o.ttlSeconds });
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      const urls = this.o.urls();
      const url = urls[Math.floor(this.o.random() * urls.length)]!;
      const closed = await this.#connectOnce(url);
      if (this.#stopped) return;
      // Full jitter over 100 ms · 2^attempt, capped at 2 s; reset once a connection synced.
      if (closed.synced) this.#attempt = 0;
      const delay = this.o.random() * Math.min(2000, 100 * 2 ** Math.min(this.#attempt++, 5));
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  async #connectOnce(url: string): Promise<{ synced: boolean }> {
    const token = await this.#token();
    const ws = new WebSocket(url);
    this.#ws = ws;
    this.synced = false;
    let synced = false;
    // Alert id → notifications for it on this connection (a delete clears it: the alert may come back).
    const sentHere = new Map<string, number>();
    ws.on('open', () => {
      this.connections++;
      ws.send(JSON.stringify({ type: 'auth', token, ...(this.o.batch ? { batch: true } : {}), ...(this.o.types ? { types: this.o.types } : {}), ...(this.cursor ? { after: this.cursor } : {}) }));
    });
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as Record<string, any>;
      if (typeof m.cursor === 'string') this.cursor = m.cursor;
      if (typeof m.unread === 'number') this.unread = m.unread;
      const fresh = m.type === 'notification' ? [m.alert] : m.type === 'notifications' ? (m.alerts as any[]) : [];
      for (const a of fresh) {
        const n = (sentHere.get(a.id) ?? 0) + 1;
        if (n > 1 + (this.o.renewed?.get(a.id) ?? 0)) this.violations.push(`tab ${this.o.id}: alert ${a.id} sent twice on one connection`);
        sentHere.set(a.id, n);
        this.#apply(a);
      }
      if (m.type === 'update') this.#apply(m.alert);
      else if (m.type === 'delete') {
        this.alerts.delete(m.id);
        this.data.delete(m.id);
        sentHere.delete(m.id);
      }
      else if (m.type === 'synced') {
        synced = true;
        this.synced = true;
      } else if (m.type === 'reset') this.violations.push(`tab ${this.o.id}: reset (${m.reason})`);
      else if (m.type === 'token_expiring' && this.o.refresh) {
        this.refreshed++;
        void this.#token().then((t) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify({ type: 'auth', token: t })));
      } else if (m.type === 'error' && !EXPECTED_ERRORS.has(m.code)) this.violations.push(`tab ${this.o.id}: error ${m.code}: ${m.message}`);
    });
    return new Promise((resolve) => {
      ws.on('error', () => {});
      ws.on('close', (code) => {
        if (code === 4401) this.expiredCloses++;
        this.synced = false;
        resolve({ synced });
      });
    });
  }

  #apply(a: { id: string; userId: string | null; type: string; read: boolean; data?: unknown }): void {
    if (a.userId === null || a.userId === undefined) this.violations.push(`tab ${this.o.id} of ${this.o.userId}: got alert ${a.id}, a row without an owner`);
    else if (a.userId !== this.o.userId) this.violations.push(`tab ${this.o.id} of ${this.o.userId}: got alert ${a.id} of ${a.userId}`);
    if (this.o.types && !this.o.types.includes(a.type)) this.violations.push(`tab ${this.o.id}: got alert ${a.id} of type ${a.type}, subscribed to ${this.o.types.join(',')}`);
    if (!this.alerts.has(a.id)) this.o.onReceived(a.id, performance.now());
    this.alerts.set(a.id, a.read);
    this.data.set(a.id, a.data ?? null);
  }
}

/**
 * Errors that are the defined answer to a fault, not a breach: the database away while a socket
 * authenticates (it is closed and resumes), a token that expired on a tab that did not refresh it.
 */
const EXPECTED_ERRORS = new Set(['unavailable', 'token_expired']);
