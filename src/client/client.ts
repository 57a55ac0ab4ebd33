/**
 * The client's state machine: the list over HTTP, the live socket (or event stream) from the
 * list's cursor, polling while neither works, reconnects with backoff, and, when tabs share one
 * connection (tabs.ts), the leader's and the followers' sides of it. Every switch resumes from
 * the last cursor, and alerts are kept by id, so nothing is missed or shown twice.
 *
 * Why one file: one state machine whose private fields (the alerts by id, the cursor, the pages,
 * the timers, the role) every transition reads and writes; split, they would have to be public.
 * The feed's calls and their optimistic undo (#local), the server's messages (#onMessage), the
 * socket and stream with heartbeat and backoff, polling and the tabs' side each read and write
 * several of them (#byId, #cursor, #live, #timers, #ws/#es), so they stay methods of this class.
 * What needs none of that state is beside it: counts.ts (reading and adjusting the counts),
 * list.ts (order, poll bound, archived memory), http.ts (a request with the token, its JSON) and
 * connection.ts (the socket's auth message, the stream's URL and events).
 */
import { authMessage, OPEN, STREAM_EVENTS, streamUrlFor } from './connection.js';
import { countsIn, weight, withoutTypes, type Counts } from './counts.js';
import { readJson, request, typesParam } from './http.js';
import { MAX_POLL_PAGES, newestFirst, rememberArchived } from './list.js';
import { groupName, tabApis, TabGroup, type Op, type Snapshot, type TabMessage } from './tabs.js';
import type { Alert, ArchiveTarget, ClientOptions, EventSourceConstructor, EventSourceLike, Events, Role, SocketConstructor, SocketLike, State, Status, Transport } from './types.js';
import { backoffDelay, tokenExpiry, tokenSubject } from './util.js';
import { watchWake, type Wake } from './wake.js';

type Timer = ReturnType<typeof setTimeout> | undefined;

export class PgbellClient {
  #state: State = { alerts: [], unread: 0, unseen: 0, byType: {}, muted: null, hasMore: false, status: 'connecting', transport: null, role: null };
  /** The list: every alert held that is not archived. */
  readonly #byId = new Map<string, Alert>();
  /** Alerts this tab saw archived (bounded): one that is unarchived is back, not new. */
  readonly #archived = new Set<string>();
  #cursor: string | undefined;
  #types: string[];
  #ws: SocketLike | null = null;
  #es: EventSourceLike | null = null;
  /** WebSocket attempts in a row that never opened: with `streamUrl`, the next goes over SSE. */
  #wsFailures = 0;
  #live = false;
  #attempt = 0;
  #started = false;
  #stopped = false;
  #token: string | undefined;
  /**
   * While a list reload is in flight, the ids live messages changed (id → #liveSeq then): the
   * reload's older snapshot must not overwrite them (a deleted alert would come back).
   */
  #touched = new Map<string, number>();
  #liveSeq = 0;
  /** Bumped by every change of the muted types: a list read across one is read again. */
  #mutedGen = 0;
  #loading = 0;
  /**
   * Ids of the list's pages, in the server's order (newest first): the next older page starts
   * below the last of them that is still here. Not the oldest alert held: a live alert may be
   * older than the pages reach (a backdated insert), and paging below it would skip the rest.
   */
  #paged: string[] = [];
  /** Counts list reloads that start the pages over: a page in flight from before one is dropped. */
  #pagesGen = 0;
  #loadingMore: Promise<void> | null = null;
  #timers: Record<'reconnect' | 'poll' | 'stable' | 'refresh' | 'sync' | 'beat' | 'pong', Timer> = { reconnect: undefined, poll: undefined, stable: undefined, refresh: undefined, sync: undefined, beat: undefined, pong: undefined };
  /** Gives up the socket or stream still waiting for `synced` (see syncTimeoutMs); null once live. */
  #abandon: (() => void) | null = null;
  /** The tabs sharing this user's connection (null: this tab holds its own, or not started). */
  #group: TabGroup | null = null;
  /** The user the group is for (the token's `sub`). */
  #userId: string | null = null;
  /** A follower's actions waiting for the leader's answer (sent again to a new leader). */
  readonly #calls = new Map<string, { op: Op; args: unknown[]; resolve: () => void; reject: (err: Error) => void }>();
  #sharePending = false;
  #unwatch: () => void = () => {};
  readonly #listeners: { [K in keyof Events]: Set<(...args: Events[K]) => void> } = { change: new Set(), status: new Set(), notification: new Set(), error: new Set() };
  readonly #o: Required<Pick<ClientOptions, 'pollIntervalMs' | 'limit'>> & ClientOptions;

  constructor(options: ClientOptions) {
    if (!options.token && !options.getToken) throw new Error('pgbell client: pass `token` or `getToken`');
    this.#o = { pollIntervalMs: 60_000, limit: 50, ...options };
    this.#types = options.types ?? [];
  }

  get state(): State {
    return this.#state;
  }

  getState = (): State => this.#state;

  on<K extends keyof Events>(event: K, fn: (...args: Events[K]) => void): () => void {
    this.#listeners[event].add(fn);
    return () => this.#listeners[event].delete(fn);
  }

  /**
   * Joins this user's tabs (see `shareTabs`) or, alone, loads the list (if `pollUrl`) and goes
   * live. A follower resolves once it has asked the leader for the state.
   */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#setStatus('connecting');
    this.#unwatch = watchWake((why) => this.#onWake(why));
    if (await this.#join()) return;
    this.#setRole('solo');
    await this.#lead();
  }

  /** Closes the socket, leaves the tabs' group (another tab takes the connection over) and stops every timer. */
  stop(): void {
    this.#stopped = true;
    this.#teardown();
    for (const call of this.#calls.values()) call.reject(new Error('pgbell client: stopped'));
    this.#calls.clear();
  }

  #teardown(): void {
    this.#unwatch();
    this.#quiet();
    this.#group?.close();
    this.#group = null;
  }

  /** Closes the socket or stream without a reconnect, and stops every timer. */
  #quiet(): void {
    for (const t of Object.values(this.#timers)) clearTimeout(t);
    this.#timers.poll = undefined;
    this.#abandon = null;
    this.#live = false;
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      ws.close(1000, 'client stopped');
    }
    this.#es?.close();
    this.#es = null;
  }

  async markRead(ids: readonly string[]): Promise<void> {
    if (this.#role === 'follower') return this.#call('markRead', [[...ids]]);
    const { changed, undo } = this.#local(ids, (a) => (a.read ? a : { ...a, read: true }));
    if (changed.length === 0) return;
    await this.#sendRead({ ids: changed }).catch(undo);
  }

  async markAllRead(): Promise<void> {
    if (this.#role === 'follower') return this.#call('markAllRead', []);
    const { undo } = this.#local(this.#byId.keys(), (a) => (a.read ? a : { ...a, read: true }), { unread: 0, unseen: 0, byType: {} });
    await this.#sendRead({ all: true }).catch(undo);
  }

  /**
   * Marks alerts seen (POST /alerts/seen over `pollUrl`): these ids, or 'all' (every alert of
   * the user not archived, whatever the filter). `unseen` drops at once; the change streams to
   * every tab. An alert read is seen already.
   */
  async markSeen(ids: readonly string[] | 'all'): Promise<void> {
    if (this.#role === 'follower') return this.#call('markSeen', [ids === 'all' ? ids : [...ids]]);
    this.#needsPollUrl('markSeen');
    const unseen = (a: Alert) => !a.seen && !a.read;
    if (ids === 'all') {
      const byType = Object.fromEntries(Object.entries(this.#state.byType).map(([t, c]) => [t, { ...c, unseen: 0 }]));
      const { undo } = this.#local(this.#byId.keys(), (a) => (unseen(a) ? { ...a, seen: true } : a), { unread: this.#state.unread, unseen: 0, byType });
      return this.#post('seen', { all: true }, undo);
    }
    // Alerts held that are seen already need nothing; ids not held may be the server's still.
    const send = [...new Set(ids)].filter((id) => {
      const a = this.#byId.get(id);
      return !a || unseen(a);
    });
    if (send.length === 0) return;
    const { undo } = this.#local(send, (a) => ({ ...a, seen: true }));
    return this.#post('seen', { ids: send }, undo);
  }

  /**
   * Archives alerts (POST /alerts/archive over `pollUrl`): these ids, every read alert
   * (`{read: true}`) or every alert ('all', whatever the filter). They leave `alerts` and the
   * counts at once; the change streams to every tab, whose lists lose them too.
   */
  async archive(target: ArchiveTarget): Promise<void> {
    if (this.#role === 'follower') return this.#call('archive', [Array.isArray(target) ? [...target] : target]);
    this.#needsPollUrl('archive');
    if (target === 'all') {
      const { undo } = this.#local(this.#byId.keys(), () => null, { unread: 0, unseen: 0, byType: {} });
      return this.#post('archive', { all: true }, undo);
    }
    if (!Array.isArray(target)) {
      const { undo } = this.#local(this.#byId.keys(), (a) => (a.read ? null : a));
      return this.#post('archive', { read: true }, undo);
    }
    const ids = [...new Set(target as readonly string[])];
    if (ids.length === 0) return;
    const { undo } = this.#local(ids, () => null);
    return this.#post('archive', { ids }, undo);
  }

  /**
   * Takes alerts out of the archive (POST /alerts/unarchive over `pollUrl`). They come back
   * into `alerts`, in their place by date, when the change streams back (or is polled).
   */
  async unarchive(ids: readonly string[]): Promise<void> {
    if (this.#role === 'follower') return this.#call('unarchive', [[...ids]]);
    this.#needsPollUrl('unarchive');
    if (ids.length === 0) return;
    for (const id of ids) this.#archived.add(id);
    return this.#post('unarchive', { ids: [...new Set(ids)] }, () => {});
  }

  /**
   * Mutes these alert types, the whole set ([] unmutes all; PUT /alerts/preferences over
   * `pollUrl`): their alerts leave `alerts` and the counts at once, and stay out of the stream
   * and the list unless the filter names them. Unmuted types come back with a reload of the list.
   * The change streams to every tab.
   */
  async setMuted(types: readonly string[]): Promise<void> {
    if (this.#role === 'follower') return this.#call('setMuted', [[...types]]);
    this.#needsPollUrl('setMuted');
    const body = (await readJson(await this.#http('/preferences', { method: 'PUT', body: JSON.stringify({ muted: [...new Set(types)] }), headers: { 'content-type': 'application/json' } }))) as { muted: string[] };
    this.#applyMuted(body.muted);
    if (!this.#live && this.#timers.poll !== undefined) this.#schedulePoll(0);
  }

  /** Reads the muted types into `state.muted` (GET /alerts/preferences over `pollUrl`). */
  async loadMuted(): Promise<void> {
    if (this.#role === 'follower') return this.#call('loadMuted', []);
    this.#needsPollUrl('loadMuted');
    const body = (await readJson(await this.#http('/preferences'))) as { muted: string[] };
    // A change that streamed meanwhile is newer than this read.
    if (this.#state.muted === null) this.#state = { ...this.#state, muted: body.muted };
    this.#emitChange({});
  }

  /**
   * A page of the archived alerts (GET /alerts?archived=1 over `pollUrl`), newest first, below
   * alert `before` if given; `more` says another page follows. Not kept in the state, and not
   * updated live: read it again after a change. Of the subscribed types, like the list.
   */
  async loadArchived(opts: { before?: string; limit?: number } = {}): Promise<{ alerts: Alert[]; more: boolean }> {
    this.#needsPollUrl('loadArchived');
    const before = opts.before === undefined ? '' : `&before=${encodeURIComponent(opts.before)}`;
    const body = (await readJson(await this.#http(`?archived=1&limit=${opts.limit ?? this.#o.limit}${before}${typesParam(this.#types)}`))) as { alerts: Alert[]; more: boolean };
    for (const a of body.alerts) rememberArchived(this.#archived, a.id);
    return { alerts: body.alerts, more: body.more };
  }

  /**
   * Loads the next older page (`limit` alerts, below the pages loaded so far) over `pollUrl`
   * into `alerts`; `hasMore` says whether another follows. Live and polled changes go on
   * applying to every alert held, old pages included. Calls while one is in flight share it.
   * Tabs that share a connection share the pages too.
   */
  loadMore(): Promise<void> {
    if (!this.#o.pollUrl) return Promise.reject(new Error('pgbell client: loadMore needs `pollUrl`'));
    if (this.#role === 'follower') return this.#call('loadMore', []);
    this.#loadingMore ??= this.#loadMore().finally(() => (this.#loadingMore = null));
    return this.#loadingMore;
  }

  /**
   * Only alerts of these types from now on ([] = all); the list is reloaded for them. The filter
   * is the connection's: tabs that share one share it.
   */
  async subscribe(types: readonly string[]): Promise<void> {
    if (this.#role === 'follower') return this.#call('subscribe', [[...types]]);
    this.#types = [...types];
    this.#byId.clear();
    this.#startPagesOver();
    this.#emitChange({});
    // An open socket has sent its auth: the server applies this once that socket is live (its
    // messages wait for the sync). A socket still connecting will send the new types in its auth.
    if (this.#ws?.readyState === OPEN) this.#ws.send(JSON.stringify({ type: 'subscribe', types: this.#types }));
    // A stream's filter is in its URL: reopen it from the cursor with the new types.
    else if (this.#es) this.#reopenStream();
    if (this.#o.pollUrl) await this.#loadList({ takeCursor: true }).catch((err) => this.#log('⚠️ Could not load alerts:', (err as Error).message));
  }

  // ---- Tabs: one connection per browser and user (tabs.ts elects; this says what it means) ----

  get #role(): Role | null {
    return this.#state.role;
  }

  /** Joins the user's group as a follower (the lock's grant makes it the leader). False: this tab goes alone. */
  async #join(): Promise<boolean> {
    const apis = tabApis(this.#o);
    if (!apis) return false;
    let token: string;
    try {
      token = await this.#getToken();
    } catch (err) {
      this.#emit('error', err as Error);
      return false;
    }
    const user = tokenSubject(token);
    if (user === null || this.#stopped) return false;
    this.#userId = user;
    this.#setRole('follower');
    this.#group = new TabGroup(groupName(this.#o.url, user), apis.locks, apis.Channel, { lead: () => void this.#becomeLeader(), message: (m) => this.#onTab(m) });
    this.#group.post({ t: 'hello' });
    return true;
  }

  async #becomeLeader(): Promise<void> {
    if (this.#stopped || !this.#group) return;
    this.#setRole('leader');
    this.#log('✅ This tab holds the connection for its user\'s tabs');
    this.#group.post({ t: 'leader', s: this.#snapshot() });
    // What this tab asked the old leader and got no answer for, it now does itself.
    for (const [id, call] of this.#calls) {
      this.#calls.delete(id);
      this.#run(call.op, call.args).then(call.resolve, call.reject);
    }
    await this.#lead();
  }

  /** Holds the connection: the list first if nothing was received yet, then live from the cursor. */
  async #lead(): Promise<void> {
    if (this.#o.pollUrl && this.#cursor === undefined) await this.#loadList({ takeCursor: true }).catch((err) => this.#log('⚠️ Could not load alerts:', (err as Error).message));
    if (!this.#stopped && this.#role !== 'follower') void this.#connect();
  }

  /** A leader about to be frozen hands the connection over: the next tab in the lock's queue takes it. */
  #resign(): void {
    this.#quiet();
    this.#setRole('follower');
    this.#group?.resign();
  }

  #onTab(m: TabMessage): void {
    const leader = this.#role === 'leader';
    switch (m.t) {
      case 'hello':
        if (leader) this.#group?.post({ t: 'state', s: this.#snapshot() });
        return;
      case 'leader':
        if (leader) return;
        this.#adopt(m.s);
        for (const [id, call] of this.#calls) this.#group?.post({ t: 'call', id, op: call.op, args: call.args });
        return;
      case 'state':
        if (!leader) this.#adopt(m.s);
        return;
      case 'notify':
        if (!leader) for (const a of m.alerts) this.#emit('notification', a);
        return;
      case 'call':
        if (!leader) return;
        this.#run(m.op, m.args).then(
          () => this.#group?.post({ t: 'reply', id: m.id }),
          (err: Error) => this.#group?.post({ t: 'reply', id: m.id, error: err.message }),
        );
        return;
      case 'reply': {
        const call = this.#calls.get(m.id);
        this.#calls.delete(m.id);
        if (m.error === undefined) call?.resolve();
        else call?.reject(new Error(m.error));
        return;
      }
      case 'wake':
        if (leader) this.#onWake('visible');
        return;
    }
  }

  #run(op: Op, args: unknown[]): Promise<void> {
    if (op === 'markRead') return this.markRead(args[0] as string[]);
    if (op === 'markAllRead') return this.markAllRead();
    if (op === 'markSeen') return this.markSeen(args[0] as string[] | 'all');
    if (op === 'archive') return this.archive(args[0] as ArchiveTarget);
    if (op === 'unarchive') return this.unarchive(args[0] as string[]);
    if (op === 'setMuted') return this.setMuted(args[0] as string[]);
    if (op === 'loadMuted') return this.loadMuted();
    if (op === 'subscribe') return this.subscribe(args[0] as string[]);
    return this.loadMore();
  }

  #call(op: Op, args: unknown[]): Promise<void> {
    const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    return new Promise<void>((resolve, reject) => {
      this.#calls.set(id, { op, args, resolve, reject });
      this.#group?.post({ t: 'call', id, op, args });
    });
  }

  #snapshot(): Snapshot {
    const { alerts, unread, unseen, byType, muted, hasMore, status, transport } = this.#state;
    return { alerts, unread, unseen, byType, muted, hasMore, status, transport, cursor: this.#cursor, paged: this.#paged, types: this.#types };
  }

  /** A follower takes the leader's state as its own (and the cursor: it may lead next). */
  #adopt(s: Snapshot): void {
    this.#byId.clear();
    for (const a of s.alerts) this.#byId.set(a.id, a);
    this.#cursor = s.cursor;
    this.#paged = [...s.paged];
    this.#types = [...s.types];
    const statusChanged = s.status !== this.#state.status;
    this.#state = { alerts: s.alerts, unread: s.unread, unseen: s.unseen, byType: s.byType, muted: s.muted ?? null, hasMore: s.hasMore, status: s.status, transport: s.transport, role: this.#role };
    if (statusChanged) this.#emit('status', s.status);
    this.#emit('change', this.#state);
  }

  /** The leader sends its state to the followers once per task, however many changes it made. */
  #share(): void {
    if (this.#role !== 'leader' || this.#sharePending) return;
    this.#sharePending = true;
    queueMicrotask(() => {
      this.#sharePending = false;
      if (this.#role === 'leader') this.#group?.post({ t: 'state', s: this.#snapshot() });
    });
  }

  /** Alerts new to this tab: its own listeners, and (as leader) the followers'. */
  #announce(alerts: Alert[]): void {
    if (alerts.length === 0) return;
    for (const a of alerts) this.#emit('notification', a);
    if (this.#role === 'leader') this.#group?.post({ t: 'notify', alerts });
  }

  /**
   * The token is another user's now (a sign-out and sign-in in another tab): leave this user's
   * tabs and what was held for them, and start over as the new user.
   */
  #switchUser(): void {
    this.#log('♻️ Another user signed in: starting over for them');
    this.#teardown();
    this.#byId.clear();
    this.#cursor = undefined;
    this.#startPagesOver();
    this.#state = { ...this.#state, alerts: [], unread: 0, unseen: 0, byType: {}, muted: null, role: null };
    this.#emit('change', this.#state);
    this.#started = false;
    void this.start();
  }

  #setRole(role: Role | null): void {
    if (this.#state.role === role) return;
    this.#state = { ...this.#state, role };
    this.#emit('change', this.#state);
  }

  // ---- Rejoin: check the socket at once when it may have died unseen (wake.ts) ----

  #onWake(why: Wake): void {
    if (this.#stopped || !this.#started) return;
    if (this.#role === 'follower') {
      if (why !== 'freeze' && why !== 'offline') this.#group?.post({ t: 'wake' });
      return;
    }
    if (why === 'freeze') {
      if (this.#role === 'leader') this.#resign();
      return;
    }
    if (this.#live) return this.#verify(why);
    if (why === 'offline') return;
    // Down or polling: try now rather than at the end of a backoff step.
    if (this.#ws || this.#es) return; // a connection is being made
    this.#log(`🔌 ${why}: reconnecting now`);
    clearTimeout(this.#timers.reconnect);
    this.#attempt = 0;
    void this.#connect();
  }

  /** Is the live socket still there? A ping must be answered within pongTimeoutMs, or it is dropped. */
  #verify(why: Wake | 'heartbeat'): void {
    if (this.#es) {
      // A stream cannot be pinged: after a wake, reopen it from the cursor.
      if (why !== 'heartbeat') this.#reopenStream();
      return;
    }
    const ws = this.#ws;
    if (!ws || ws.readyState !== OPEN || this.#timers.pong !== undefined) return;
    ws.send(JSON.stringify({ type: 'ping' }));
    this.#timers.pong = setTimeout(() => {
      this.#timers.pong = undefined;
      if (this.#ws !== ws) return;
      this.#log(`🔌 No answer to a ping within ${this.#o.pongTimeoutMs ?? 5000} ms (${why}): reconnecting`);
      this.#ws = null;
      ws.onclose = null;
      ws.onmessage = null;
      ws.close(4000, 'no pong');
      this.#attempt = 0;
      this.#onDisconnect();
    }, this.#o.pongTimeoutMs ?? 5000);
  }

  /** While live: a ping every heartbeatMs; a tick far later than due means the device slept. */
  #startBeat(): void {
    clearTimeout(this.#timers.beat);
    const every = this.#o.heartbeatMs ?? 25_000;
    let last = Date.now();
    const tick = () => {
      const now = Date.now();
      const gap = now - last;
      last = now;
      if (!this.#live) return;
      const slept = gap > 2 * every;
      if (slept) this.#log(`🔌 ${Math.round(gap / 1000)} s without a tick (asleep?): checking the socket`);
      this.#verify(slept ? 'sleep' : 'heartbeat');
      this.#timers.beat = setTimeout(tick, every);
    };
    this.#timers.beat = setTimeout(tick, every);
  }

  async #getToken(): Promise<string> {
    this.#token = this.#o.getToken ? await this.#o.getToken() : this.#o.token!;
    return this.#token;
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    let token: string;
    try {
      token = await this.#getToken();
    } catch (err) {
      this.#emit('error', err as Error);
      return this.#onDisconnect();
    }
    // stop() may have run while the token was being fetched (the React hook's delayed stop), or
    // this tab handed the connection over.
    if (this.#stopped || this.#role === 'follower') return;
    if (this.#group && tokenSubject(token) !== this.#userId) return this.#switchUser();
    const transport = this.#o.transport ?? 'auto';
    if (this.#o.streamUrl && (transport === 'sse' || (transport === 'auto' && this.#wsFailures > 0))) return this.#connectStream(token);
    const Ctor = this.#o.WebSocket ?? (globalThis as { WebSocket?: SocketConstructor }).WebSocket;
    if (!Ctor) throw new Error('pgbell client: no WebSocket implementation; pass options.WebSocket');
    const ws = new Ctor(this.#o.url);
    this.#ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.#wsFailures = 0;
      this.#log('✅ WebSocket connected, authenticating...');
      ws.send(authMessage(token, this.#cursor, this.#types));
      this.#awaitSync(() => {
        if (this.#ws !== ws) return;
        this.#ws = null;
        ws.onclose = null;
        ws.onmessage = null;
        // The close handshake is not waited for: a server that says nothing may not answer it.
        ws.close(4000, 'no ready in time');
        this.#onDisconnect();
      });
    };
    ws.onmessage = (ev) => this.#onMessage(String(ev.data));
    ws.onerror = () => {};
    ws.onclose = (ev) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      if (!opened) this.#wsFailures++;
      if (ev.code === 4401) this.#token = undefined;
      this.#onDisconnect();
    };
  }

  /** The same messages over Server-Sent Events (GET /alerts/stream), resuming from the cursor. */
  #connectStream(token: string): void {
    const Ctor = this.#o.EventSource ?? (globalThis as unknown as { EventSource?: EventSourceConstructor }).EventSource;
    if (!Ctor) throw new Error('pgbell client: no EventSource implementation; pass options.EventSource');
    const es = new Ctor(streamUrlFor(this.#o.streamUrl!, token, this.#cursor, this.#types));
    this.#es = es;
    this.#log('✅ Event stream connecting (WebSocket unavailable)...');
    this.#awaitSync(() => {
      if (this.#es !== es) return;
      es.close();
      this.#es = null;
      this.#onDisconnect();
    });
    for (const type of STREAM_EVENTS) {
      es.addEventListener(type, (ev) => {
        // The server's own `error` messages carry data; the EventSource's connection errors do not.
        if (this.#es === es && typeof ev.data === 'string') this.#onMessage(ev.data);
      });
    }
    const lost = () => {
      if (this.#es !== es) return;
      es.close();
      this.#es = null;
      this.#onDisconnect();
    };
    // pgbell ended the stream (shutdown, revocation, slow consumer): the message says why.
    es.addEventListener('close', lost);
    // A lost connection: reconnect (and poll meanwhile) the same way as for a socket, from the
    // cursor, rather than let EventSource retry with a token that may have expired.
    es.onerror = (ev) => {
      if (typeof ev.data !== 'string') lost();
    };
  }

  /** Reopens the event stream from the cursor (new types, or a fresh token before expiry). */
  #reopenStream(): void {
    const old = this.#es;
    this.#es = null;
    old?.close();
    this.#live = false;
    void this.#connect();
  }

  /** Gives up the connection with `abandon` unless the server says something within syncTimeoutMs (restarted by each message until `synced`). */
  #awaitSync(abandon: () => void): void {
    this.#abandon = abandon;
    this.#restartSyncWait();
  }

  #restartSyncWait(): void {
    clearTimeout(this.#timers.sync);
    this.#timers.sync = setTimeout(() => {
      const abandon = this.#abandon;
      this.#abandon = null;
      if (!abandon) return;
      this.#log(`⏱️ No \`synced\` within ${this.#o.syncTimeoutMs ?? 30_000} ms, reconnecting`);
      abandon();
    }, this.#o.syncTimeoutMs ?? 30_000);
  }

  #onDisconnect(): void {
    if (this.#stopped || this.#role === 'follower') return;
    clearTimeout(this.#timers.sync);
    clearTimeout(this.#timers.beat);
    clearTimeout(this.#timers.pong);
    this.#timers.pong = undefined;
    this.#abandon = null;
    const wasLive = this.#live;
    this.#live = false;
    this.#setTransport(null);
    clearTimeout(this.#timers.stable);
    clearTimeout(this.#timers.refresh);
    if (wasLive || this.#state.status === 'connecting') {
      if (this.#o.pollUrl) this.#log('🔌 WebSocket disconnected, using polling fallback');
      else this.#log('🔌 WebSocket disconnected');
    }
    if (this.#o.pollUrl) {
      if (this.#state.status !== 'polling' && this.#state.status !== 'offline') this.#setStatus('polling');
      if (this.#timers.poll === undefined) this.#schedulePoll(0);
    } else {
      this.#setStatus('offline');
    }
    const delay = backoffDelay(this.#attempt++, this.#o.backoff?.baseMs, this.#o.backoff?.capMs, this.#o.random);
    this.#timers.reconnect = setTimeout(() => void this.#connect(), delay);
  }

  #onMessage(text: string): void {
    let m: any;
    try {
      m = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof m.cursor === 'string') this.#cursor = m.cursor;
    // Anything from the server answers a ping: the socket is alive.
    clearTimeout(this.#timers.pong);
    this.#timers.pong = undefined;
    // Not live yet: the server is answering, so the wait for `synced` starts again.
    if (this.#abandon && m.type !== 'synced') this.#restartSyncWait();
    switch (m.type) {
      case 'ready':
        this.#log(`✅ WebSocket authenticated: ${m.email ?? m.userId}`);
        this.#scheduleRefresh();
        return this.#emitChange(countsIn(m));
      case 'reset':
        this.#log('♻️ Cursor reset by the server, reloading:', m.reason);
        this.#byId.clear();
        this.#startPagesOver();
        this.#emitChange({});
        if (this.#o.pollUrl) void this.#loadList({ replace: true }).catch(() => {});
        return;
      case 'synced':
        clearTimeout(this.#timers.sync);
        this.#abandon = null;
        this.#live = true;
        this.#setTransport(this.#es ? 'sse' : 'websocket');
        clearTimeout(this.#timers.poll);
        this.#timers.poll = undefined;
        this.#timers.stable = setTimeout(() => (this.#attempt = 0), this.#o.backoff?.stableMs ?? 10_000);
        if (!this.#es) this.#startBeat();
        this.#setStatus('live');
        return this.#emitChange(countsIn(m));
      case 'notification':
      case 'notifications': {
        // A resume may repeat what this tab (or the leader before it) had: announced once.
        const fresh: Alert[] = [];
        for (const a of (m.type === 'notification' ? [m.alert] : m.alerts) as Alert[]) {
          if (this.#put(a)) fresh.push(a);
          this.#log('📬 Real-time notification received:', a.title);
        }
        this.#emitChange(countsIn(m));
        return this.#announce(fresh);
      }
      case 'update': {
        // An alert inserted and changed again before it reached this client arrives as an
        // update of an id it does not have: to the app, it is a new notification (unless it
        // was archived: then it leaves the list, and when unarchived it is back, not new).
        const isNew = this.#put(m.alert);
        this.#emitChange(countsIn(m));
        if (isNew) this.#announce([m.alert]);
        return;
      }
      case 'delete':
        this.#touch(m.id);
        this.#byId.delete(m.id);
        return this.#emitChange(countsIn(m));
      case 'subscribed':
        return this.#emitChange(countsIn(m));
      case 'preferences':
        this.#applyMuted(m.muted);
        return this.#emitChange(countsIn(m));
      case 'error':
        this.#log('⚠️ Server error:', m.code, m.message);
        return this.#emit('error', new Error(`${m.code}: ${m.message}`));
    }
  }

  /** Re-authenticates the open socket with a fresh token shortly before the current one expires. */
  #scheduleRefresh(): void {
    clearTimeout(this.#timers.refresh);
    const exp = this.#token ? tokenExpiry(this.#token) : null;
    if (exp === null || !this.#o.getToken) return;
    const inMs = Math.max(1_000, exp * 1000 - Date.now() - (this.#o.refreshLeadMs ?? 60_000));
    this.#timers.refresh = setTimeout(async () => {
      try {
        if (this.#es) return this.#reopenStream(); // asks getToken() for a fresh one
        const token = await this.#getToken();
        if (this.#ws?.readyState === OPEN) this.#ws.send(JSON.stringify({ type: 'auth', token }));
      } catch (err) {
        this.#emit('error', err as Error);
      }
    }, inMs);
  }

  #schedulePoll(delay: number): void {
    clearTimeout(this.#timers.poll);
    this.#timers.poll = setTimeout(async () => {
      if (this.#live || this.#stopped) {
        this.#timers.poll = undefined;
        return;
      }
      try {
        await this.#poll();
        if (!this.#live) this.#setStatus('polling');
      } catch (err) {
        if (!this.#live) this.#setStatus('offline');
        this.#log('⚠️ Polling failed:', (err as Error).message);
      }
      if (!this.#live && !this.#stopped) this.#schedulePoll(this.#o.pollIntervalMs);
      else this.#timers.poll = undefined;
    }, delay);
  }

  async #poll(): Promise<void> {
    // A response holds one page of what changed (`more`: ask again at once), up to a bound.
    for (let page = 0; page < MAX_POLL_PAGES; page++) {
      if (!this.#cursor) return this.#loadList();
      const res = await this.#http(`?after=${encodeURIComponent(this.#cursor)}${typesParam(this.#types)}`);
      // The cursor is refused (too old, too far behind, another database): start over from a
      // fresh list and its cursor, or every later poll would be refused too. What was deleted
      // meanwhile is unknown, so the list replaces what is held.
      if (res.status === 410) return this.#loadList({ replace: true, takeCursor: true });
      const body = (await readJson(res)) as { alerts: Alert[]; deleted: string[]; unread: number; cursor: string; more?: boolean; preferences?: { muted: string[] } };
      if (this.#live) return; // the socket came back meanwhile and is authoritative
      // The muted types as of this page's changes, before its alerts (which already leave them out).
      if (body.preferences) this.#applyMuted(body.preferences.muted);
      for (const a of body.alerts) if (this.#put(a)) this.#log('📬 Notification received by polling:', a.title);
      for (const id of body.deleted) {
        this.#touch(id);
        this.#byId.delete(id);
      }
      this.#cursor = body.cursor;
      this.#emitChange(countsIn(body));
      if (!body.more) return;
    }
  }

  /**
   * GET the newest alerts. `replace`: drop what is held first (after a reset); `takeCursor`:
   * resume from the list's snapshot (unless the socket went live meanwhile: its cursor is
   * newer). Ids a live message changed while the request was out keep their live state.
   */
  async #loadList(opts: { replace?: boolean; takeCursor?: boolean } = {}): Promise<void> {
    const started = this.#liveSeq;
    const mutedGen = this.#mutedGen;
    this.#loading++;
    try {
      const res = await this.#http(`?limit=${this.#o.limit}${typesParam(this.#types)}`);
      const body = (await readJson(res)) as { alerts: Alert[]; unread: number; cursor: string; more?: boolean };
      // The muted types changed while this list was read: it may hold a type muted since (and
      // its counts count it), so read it again.
      if (mutedGen !== this.#mutedGen) return void (await this.#loadList(opts));
      const newer = (id: string) => (this.#touched.get(id) ?? -1) > started;
      if (opts.replace) for (const id of [...this.#byId.keys()]) if (!newer(id)) this.#byId.delete(id);
      for (const a of body.alerts) if (!newer(a.id)) this.#byId.set(a.id, a);
      if ((opts.takeCursor && !this.#live) || !this.#cursor) this.#cursor = body.cursor;
      // The pages start from this list when it replaces what was held, or when none were loaded;
      // otherwise it only refreshes the newest alerts and the older pages stay as they were.
      if (opts.replace || this.#paged.length === 0) {
        this.#startPagesOver();
        this.#paged = body.alerts.map((a) => a.id);
        this.#state = { ...this.#state, hasMore: body.more === true };
      }
      this.#emitChange(countsIn(body));
    } finally {
      if (--this.#loading === 0) this.#touched.clear();
    }
  }

  async #loadMore(): Promise<void> {
    const gen = this.#pagesGen;
    const started = this.#liveSeq;
    this.#loading++;
    try {
      while (this.#state.hasMore && gen === this.#pagesGen) {
        let before: string | undefined;
        for (let i = this.#paged.length - 1; i >= 0 && before === undefined; i--) if (this.#byId.has(this.#paged[i]!)) before = this.#paged[i];
        // Every alert of the pages was deleted: the first page again is where the rest begins.
        const res = await this.#http(`?limit=${this.#o.limit}${before === undefined ? '' : `&before=${encodeURIComponent(before)}`}${typesParam(this.#types)}`);
        if (gen !== this.#pagesGen) return; // the list started over meanwhile; its pages rule
        if (res.status === 404 && before !== undefined) {
          // The alert was deleted and its delete has not reached this client yet: page from
          // the one above it (the pages hold everything between, so nothing is skipped).
          const body = (await res.json().catch(() => ({}))) as { error?: string };
          if (body.error !== 'unknown_alert') throw new Error(`404 ${body.error ?? ''}`);
          this.#paged = this.#paged.filter((id) => id !== before);
          continue;
        }
        const body = (await readJson(res)) as { alerts: Alert[]; more: boolean };
        const newer = (id: string) => (this.#touched.get(id) ?? -1) > started;
        for (const a of body.alerts) if (!newer(a.id)) this.#byId.set(a.id, a);
        const ids = body.alerts.map((a) => a.id);
        this.#paged = before === undefined ? ids : [...this.#paged, ...ids];
        this.#state = { ...this.#state, hasMore: body.more };
        this.#emitChange({});
        return;
      }
    } finally {
      if (--this.#loading === 0) this.#touched.clear();
    }
  }

  /** What was held is gone (a reset, a new filter): the pages start over with the next list. */
  #startPagesOver(): void {
    this.#pagesGen++;
    this.#paged = [];
    this.#state = { ...this.#state, hasMore: false };
  }

  /**
   * An alert's current state from the server (live or polled): an archived one leaves the list.
   * True when it is new to this tab (not held, and not an unarchived one it saw archived).
   */
  #put(a: Alert): boolean {
    this.#touch(a.id);
    const held = this.#byId.has(a.id);
    if (a.archived) {
      this.#byId.delete(a.id);
      rememberArchived(this.#archived, a.id);
      return false;
    }
    this.#byId.set(a.id, a);
    return !held && !this.#archived.delete(a.id);
  }

  /**
   * The user's muted types are now `next`. Without a filter, their alerts leave the list (and
   * their counts, until the server's come); a type unmuted, or a change from a set not known,
   * reloads the list, since what it held left that type's alerts out. With a filter the server
   * sends the filter's types whatever is muted: nothing to do but remember the set.
   */
  #applyMuted(next: readonly string[]): void {
    const prev = this.#state.muted;
    if (prev === null || prev.join('\u0000') !== next.join('\u0000')) this.#mutedGen++;
    this.#state = { ...this.#state, muted: next };
    if (this.#types.length > 0) return this.#emitChange({});
    const gone = new Set(next.filter((t) => !prev?.includes(t)));
    for (const [id, a] of this.#byId) {
      if (!next.includes(a.type)) continue;
      this.#touch(id);
      this.#byId.delete(id);
    }
    this.#emitChange(withoutTypes(this.#state, gone));
    const unmuted = prev === null || prev.some((t) => !next.includes(t));
    if (unmuted && this.#o.pollUrl) void this.#loadList({ replace: true }).catch((err) => this.#log('⚠️ Could not load alerts:', (err as Error).message));
  }

  /**
   * A change this tab asked the server for, shown before the server confirms it (the stream or
   * the next poll brings the confirmed state and counts): `next` gives an alert's new state
   * (null: out of the list). The counts follow from the alerts changed, or are `counts` when
   * the change reaches alerts not held (the 'all' forms). Returns the ids changed and the undo
   * for a refusal, which restores what no newer news from the server has replaced since.
   */
  #local(ids: Iterable<string>, next: (a: Alert) => Alert | null, counts?: Counts): { changed: string[]; undo: (err: unknown) => never } {
    const before: Counts = { unread: this.#state.unread, unseen: this.#state.unseen, byType: this.#state.byType };
    const done: [Alert, Alert | null][] = [];
    const byType: Record<string, { unread: number; unseen: number }> = { ...before.byType };
    let { unread, unseen } = before;
    for (const id of [...ids]) {
      const a = this.#byId.get(id);
      if (!a) continue;
      const b = next(a);
      if (b === a) continue;
      done.push([a, b]);
      this.#touch(id);
      if (b) this.#byId.set(id, b);
      else this.#byId.delete(id);
      const [u0, s0] = weight(a);
      const [u1, s1] = weight(b);
      if (u0 === u1 && s0 === s1) continue;
      unread += u1 - u0;
      unseen += s1 - s0;
      const t = byType[a.type] ?? { unread: 0, unseen: 0 };
      const c = { unread: Math.max(0, t.unread + u1 - u0), unseen: Math.max(0, t.unseen + s1 - s0) };
      if (c.unread === 0) delete byType[a.type];
      else byType[a.type] = c;
    }
    const after: Counts = counts ?? { unread: Math.max(0, unread), unseen: Math.max(0, unseen), byType };
    this.#emitChange(after);
    const shown = this.#state.byType;
    const undo = (err: unknown): never => {
      for (const [a, b] of done) {
        if (b ? this.#byId.get(a.id) === b : !this.#byId.has(a.id)) this.#byId.set(a.id, a);
      }
      // Counts from the server since are newer than both.
      this.#emitChange(this.#state.byType === shown ? before : {});
      throw err;
    };
    return { changed: done.map(([a]) => a.id), undo };
  }

  #needsPollUrl(what: string): void {
    if (!this.#o.pollUrl) throw new Error(`pgbell client: ${what} needs \`pollUrl\``);
  }

  /** POST /alerts/<route>; a refusal undoes what was shown. While polling, the next poll comes at once, with the counts. */
  async #post(route: 'seen' | 'archive' | 'unarchive', body: object, undo: (err: unknown) => void): Promise<void> {
    try {
      await readJson(await this.#http(`/${route}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }));
    } catch (err) {
      undo(err);
      throw err;
    }
    if (!this.#live && this.#timers.poll !== undefined) this.#schedulePoll(0);
  }

  /** A live message changed this id (see #touched). */
  #touch(id: string): void {
    if (this.#loading > 0) this.#touched.set(id, ++this.#liveSeq);
  }

  async #sendRead(body: { ids: string[] } | { all: true }): Promise<void> {
    if (this.#live && this.#ws?.readyState === OPEN) {
      this.#ws.send(JSON.stringify({ type: 'read', ...body }));
      return;
    }
    if (!this.#o.pollUrl) return;
    const res = await this.#http('/read', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    await readJson(res);
  }

  #http(suffix: string, init: RequestInit = {}): Promise<Response> {
    return request(this.#o, this.#token, () => this.#getToken(), suffix, init);
  }

  #setTransport(transport: Transport | null): void {
    if (this.#state.transport === transport) return;
    this.#state = { ...this.#state, transport };
    this.#emit('change', this.#state);
    this.#share();
  }

  #setStatus(status: Status): void {
    if (this.#state.status === status) return;
    this.#state = { ...this.#state, status };
    this.#emit('status', status);
    this.#emit('change', this.#state);
    this.#share();
  }

  /** The list in its order (createdAt, then id, both descending), with the counts given. */
  #emitChange(counts: Partial<Counts>): void {
    const alerts = [...this.#byId.values()].sort(newestFirst);
    this.#state = { ...this.#state, alerts, ...counts };
    this.#emit('change', this.#state);
    this.#share();
  }

  #emit<K extends keyof Events>(event: K, ...args: Events[K]): void {
    for (const fn of this.#listeners[event]) fn(...args);
  }

  #log(...args: unknown[]): void {
    if (this.#o.debug) (this.#o.logger ?? console.log)(...args);
  }
}

