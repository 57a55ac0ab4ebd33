/**
 * A browser tab under chaos: it keeps its own model of the bell from what the server sends (its
 * list: alert id → read, seen, type; the last counts: unread, unseen, byType; the muted types),
 * reconnects with its own jittered backoff to any node, resumes from its last cursor, and
 * records every breach of the promise as it happens: an alert of another user, an alert of a
 * type it did not subscribe to, or (live, without a filter) of a type muted, a new alert sent
 * twice on one connection, a reset. Some tabs batch, some filter by type, some hold tokens that
 * expire mid-run (and either re-authenticate on `token_expiring` or get closed with 4401 and
 * resume). As pgbell/client does, an archived alert leaves the list (an unarchived one comes
 * back as an `update`), a `preferences` message takes a newly muted type's alerts out of an
 * unfiltered tab's list, and an unmute makes it reload the list (GET /alerts, every page, between
 * two reads of GET /alerts/preferences that agree) and resume the stream from the list's cursor.
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

export interface TabAlert {
  read: boolean;
  seen: boolean;
  type: string;
}

type Suspect = { cursor: string; type: string; violation: string };

type Wire = { id: string; userId: string | null; type: string; read: boolean; seen: boolean; archived: boolean; data?: unknown };

export class ChaosTab {
  /** The bell's list as this tab sees it (archived alerts left out). */
  readonly alerts = new Map<string, TabAlert>();
  /** Each alert's data as last sent. */
  readonly data = new Map<string, unknown>();
  unread = 0;
  unseen = 0;
  byType: Record<string, { unread: number; unseen: number }> = {};
  /** The user's muted types, as the last `preferences` message (or the last reload) said. */
  muted: string[] = [];
  /** Lists read again after an unmute. */
  reloads = 0;
  #reloadDue = false;
  #context: string[] = [];
  /**
   * Alerts of a type this tab holds muted, received live on this connection: a breach unless a
   * `preferences` message with the same cursor unmutes the type. A catch-up (the daemon's
   * listener or WAL stream came back) replays to live sockets too, every message with the cursor
   * it resumed from, decided by the read's muted set: an alert of a type unmuted since is sent,
   * possibly before the `preferences` message that unmutes it (src/delivery/replay.ts).
   */
  #suspects: Suspect[] = [];
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
    // The run is over and every tab matched the database: nothing undecided is excused now.
    for (const x of this.#suspects) this.violations.push(x.violation);
    this.#suspects = [];
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
      if (this.#reloadDue && !(await this.#reload(url))) {
        await new Promise((r) => setTimeout(r, 200 + this.o.random() * 300));
        continue;
      }
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
    // The last messages of this connection, in short: what a violation names as its context.
    const recent: string[] = [];
    ws.on('open', () => {
      this.connections++;
      ws.send(JSON.stringify({ type: 'auth', token, ...(this.o.batch ? { batch: true } : {}), ...(this.o.types ? { types: this.o.types } : {}), ...(this.cursor ? { after: this.cursor } : {}) }));
    });
    ws.on('message', (data) => {
      // Once a reload is due, what else this connection sends is thrown away with the list.
      if (this.#reloadDue) return;
      const m = JSON.parse(String(data)) as Record<string, any>;
      this.#context = recent;
      recent.push(brief(m));
      if (recent.length > 8) recent.shift();
      if (typeof m.cursor === 'string') this.#settle(m);
      if (typeof m.cursor === 'string') this.cursor = m.cursor;
      if (typeof m.unread === 'number') this.#counts(m as any);
      const fresh = m.type === 'notification' ? [m.alert] : m.type === 'notifications' ? (m.alerts as any[]) : [];
      for (const a of fresh) {
        const n = (sentHere.get(a.id) ?? 0) + 1;
        if (n > 1 + (this.o.renewed?.get(a.id) ?? 0)) this.violations.push(`tab ${this.o.id}: alert ${a.id} sent twice on one connection`);
        sentHere.set(a.id, n);
        this.#apply(a, synced);
      }
      if (m.type === 'update') this.#apply(m.alert, synced);
      else if (m.type === 'delete') {
        this.alerts.delete(m.id);
        this.data.delete(m.id);
        sentHere.delete(m.id);
      } else if (m.type === 'preferences') {
        const before = this.muted;
        this.muted = m.muted as string[];
        if (!this.o.types) {
          for (const [id, a] of this.alerts) if (this.muted.includes(a.type)) this.#drop(id);
          // An unmuted type's alerts were not streamed while it was muted: the list again.
          if (before.some((t) => !this.muted.includes(t))) {
            this.#reloadDue = true;
            ws.terminate();
          }
        }
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
        // Cut inside a replay: whether its preferences message would have excused them is unknown.
        this.#suspects = [];
        if (code === 4401) this.expiredCloses++;
        this.synced = false;
        resolve({ synced });
      });
    });
  }

  /** The suspects a message settles: excused by a `preferences` message of their cursor unmuting their type, breaches once a message of another cursor comes first. */
  #settle(m: Record<string, any>): void {
    const kept: Suspect[] = [];
    for (const x of this.#suspects) {
      if (x.cursor !== m.cursor) this.violations.push(x.violation);
      else if (!(m.type === 'preferences' && !m.muted.includes(x.type))) kept.push(x);
    }
    this.#suspects = kept;
  }

  #counts(m: { unread: number; unseen: number; byType: Record<string, { unread: number; unseen: number }> }): void {
    this.unread = m.unread;
    this.unseen = m.unseen;
    this.byType = m.byType;
  }

  #drop(id: string): void {
    this.alerts.delete(id);
    this.data.delete(id);
  }

  /** `live`: after `synced` on this connection, where an unfiltered tab gets no alert of a muted type; `announce`: not from a reload. */
  #apply(a: Wire, live: boolean, announce = true): void {
    if (a.userId === null || a.userId === undefined) this.violations.push(`tab ${this.o.id} of ${this.o.userId}: got alert ${a.id}, a row without an owner`);
    else if (a.userId !== this.o.userId) this.violations.push(`tab ${this.o.id} of ${this.o.userId}: got alert ${a.id} of ${a.userId}`);
    if (this.o.types && !this.o.types.includes(a.type)) this.violations.push(`tab ${this.o.id}: got alert ${a.id} of type ${a.type}, subscribed to ${this.o.types.join(',')}`);
    if (!this.o.types && live && this.muted.includes(a.type)) {
      this.#suspects.push({ cursor: this.cursor!, type: a.type, violation: `tab ${this.o.id} of ${this.o.userId}: got alert ${a.id} of muted type ${a.type} live (muted: ${this.muted.join(',')}; this connection's last messages: ${this.#context.join(' · ')})` });
    }
    if (announce && !this.alerts.has(a.id)) this.o.onReceived(a.id, performance.now());
    if (a.archived) {
      this.#drop(a.id);
      return;
    }
    this.alerts.set(a.id, { read: a.read, seen: a.seen, type: a.type });
    this.data.set(a.id, a.data ?? null);
  }

  /**
   * The list again, as pgbell/client reads it after an unmute: GET /alerts/preferences, every
   * page of GET /alerts, GET /alerts/preferences again (a list read across a change of the muted
   * types is read again); the stream then resumes from the first page's cursor. False when a
   * request failed (a fault): the caller tries again.
   */
  async #reload(wsUrl: string): Promise<boolean> {
    const base = wsUrl.replace(/^ws/, 'http').replace(/\/$/, '');
    const get = async (path: string): Promise<any> => {
      const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${await this.#token()}` }, signal: AbortSignal.timeout(8000) });
      const body: any = await res.json().catch(() => null);
      if (res.status === 200) return body;
      if (res.status !== 503 && res.status !== 429 && !(res.status === 404 && body?.error === 'unknown_alert')) this.violations.push(`tab ${this.o.id}: GET ${path} answered ${res.status} ${JSON.stringify(body)}`);
      throw new Error(`GET ${path}: ${res.status}`);
    };
    try {
      const before = (await get('/alerts/preferences')).muted as string[];
      const first = await get('/alerts?limit=200');
      const pages = [first];
      while (pages.at(-1).more) pages.push(await get(`/alerts?limit=200&before=${encodeURIComponent(pages.at(-1).alerts.at(-1).id)}`));
      const after = (await get('/alerts/preferences')).muted as string[];
      if (before.join() !== after.join()) return false;
      if (this.#stopped) return false;
      this.alerts.clear();
      this.data.clear();
      this.muted = after;
      for (const p of pages) for (const a of p.alerts) this.#apply(a, false, false);
      this.#counts(first);
      this.cursor = first.cursor;
      this.#reloadDue = false;
      this.reloads++;
      return true;
    } catch {
      return false;
    }
  }
}

/** A message in a few words: its type, and its alerts' ids and types or its muted types. */
function brief(m: Record<string, any>): string {
  const alerts: any[] = m.alert ? [m.alert] : m.alerts ?? [];
  if (m.type === 'preferences') return `preferences [${m.muted.join(',')}]`;
  if (m.type === 'delete') return `delete ${m.id}`;
  return alerts.length > 0 ? `${m.type} ${alerts.map((a) => `${a.id}:${a.type}${a.archived ? ':archived' : ''}`).join(',')}` : m.type;
}

/**
 * Errors that are the defined answer to a fault, not a breach: the database away while a socket
 * authenticates (it is closed and resumes), a token that expired on a tab that did not refresh it.
 */
const EXPECTED_ERRORS = new Set(['unavailable', 'token_expired']);
