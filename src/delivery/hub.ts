/**
 * Who is connected: user id → that user's subscribers (one per authenticated socket). A
 * subscriber knows what its client has seen (its cursor), so fan-out can skip what it already
 * has and hand it a cursor to resume from. Alerts reach a user's sockets and no one else's
 * because this map is the only way to a socket.
 */
import type { Socket } from './socket.js';
import type { CursorState } from './cursor.js';
import type { Stashed } from './stash.js';
import { CloseCode } from '../errors.js';
import type { UnreadByType } from '../db/changes.js';

const SETTLED = Promise.resolve();
const NONE_MUTED: ReadonlySet<string> = new Set();

/** The TCP socket under a WebSocket (ws keeps it as `_socket`); undefined for an event stream. */
export function netSocketOf(ws: Socket): { cork?: () => void; uncork: () => void; remoteAddress?: string } | undefined {
  return (ws as { _socket?: { cork?: () => void; uncork: () => void; remoteAddress?: string } })._socket;
}

export class Subscriber {
  #cursor: CursorState | null = null;
  /** Told when the subscriber may have become live or stopped being live (the Hub's live users). One handler shared by every subscriber, so it is given the subscriber. */
  onLiveChange: (sub: Subscriber) => void = () => {};

  /** Set once the first sync has run; live deliveries skip a subscriber until then. */
  get cursor(): CursorState | null {
    return this.#cursor;
  }

  set cursor(c: CursorState | null) {
    const was = this.#cursor !== null;
    this.#cursor = c;
    if (was !== (c !== null)) this.onLiveChange(this);
  }
  #stash: Stashed[] | null = null;

  /**
   * While this subscriber's sync read runs: the live changes of its user that arrived
   * meanwhile, sent after the sync's own (those it already has, by its cursor, skipped). Null
   * when no sync read is running.
   */
  get stash(): Stashed[] | null {
    return this.#stash;
  }

  set stash(s: Stashed[] | null) {
    const was = this.#stash !== null;
    this.#stash = s;
    if (was !== (s !== null)) this.onLiveChange(this);
  }

  /** Live, or syncing: live reads must include its user. */
  get receiving(): boolean {
    return this.#cursor !== null || this.#stash !== null;
  }

  /** The counts by type last sent (before its type filter), for a `ready` after re-authentication. */
  byType: UnreadByType = {};
  /** The user's muted types, as of the last change sent (see wants in messages.ts). */
  muted: ReadonlySet<string> = NONE_MUTED;
  /** `ready` has been sent (a replay cut short by a full buffer continues without another). */
  readySent = false;
  /** Where a replay cut short by a full buffer goes on from once the socket has drained. */
  resumeFrom: CursorState | null = null;
  /**
   * And the alerts that replay sent as new (id → the transaction that inserted it): the
   * continuation sends a later change of one as an update. `resumeFrom` alone cannot say: it
   * names the transactions sent, and an alert changed again before the read was sent in the
   * later one's state, its insert's transaction named nowhere.
   */
  resumeSentNew: Map<string, bigint> | null = null;
  /** The epoch (see EPOCH in src/db/epoch.ts) `cursor` and `resumeFrom` belong to. */
  epoch = '';
  /** The client takes `notifications` frames (auth with `batch: true`). */
  batch = false;
  /** Alert types this socket asked for ({"type":"subscribe"}); null means all. */
  types: ReadonlySet<string> | null = null;
  /**
   * Made when first asked for and dropped once settled: an idle socket keeps no promise and
   * no resolver.
   */
  #synced: Promise<void> | null = null;
  #resolve: (() => void) | null = null;
  #settled = false;

  constructor(
    readonly ws: Socket,
    readonly userId: string,
    readonly email: string | null,
    /** The cursor the client sent with its first auth message, if any. */
    readonly after: string | null,
    /** Unsent output allowed before the socket is closed as a slow consumer. */
    private readonly maxBuffered: number = Infinity,
    private readonly onSlow: (sub: Subscriber) => void = () => {},
  ) {}

  /** Settles once the first sync is over (or will never happen: socket closed, daemon stopping). */
  get synced(): Promise<void> {
    if (this.#settled) return SETTLED;
    return (this.#synced ??= new Promise((resolve) => (this.#resolve = resolve)));
  }

  settle(): void {
    this.#settled = true;
    this.#resolve?.();
    this.#synced = null;
    this.#resolve = null;
  }

  get live(): boolean {
    return this.cursor !== null;
  }

  /** More unsent output than the bound allows. */
  get congested(): boolean {
    return this.ws.bufferedAmount > this.maxBuffered;
  }

  /** Resolves once the unsent output is back under half the bound (or the socket closed). */
  drained(): Promise<void> {
    return new Promise((resolve) => {
      const check = () => (!this.open || this.ws.bufferedAmount <= this.maxBuffered / 2 ? resolve() : setTimeout(check, 20).unref());
      check();
    });
  }

  get open(): boolean {
    return this.ws.readyState === this.ws.OPEN;
  }

  /**
   * Runs `fn` with this socket's writes held, then written together: `ready` and `synced`
   * leave in one system call instead of one each (at 10,000 sockets authenticating, the writes
   * were the daemon's largest cost). Only for a few small frames: held output counts toward the
   * socket's bound (see `congested`) before the kernel has taken any of it.
   */
  corked(fn: () => void): void {
    const raw = netSocketOf(this.ws);
    if (!raw?.cork) return fn();
    raw.cork();
    try {
      fn();
    } finally {
      raw.uncork();
    }
  }

  /**
   * Sends unless the client has stopped reading. Past the bound it is closed (4008) instead of
   * buffering without limit: what it did not get, it gets by resuming from its last cursor.
   */
  send(frame: string, replay = false): void {
    if (!this.open) return;
    // A replay watches the bound itself (see Delivery) and pauses instead of being closed.
    if (!replay && this.congested) {
      this.onSlow(this);
      this.ws.close(CloseCode.SlowConsumer, 'slow consumer');
      // The close frame waits behind the unread output; do not wait for it for long.
      setTimeout(() => this.ws.terminate(), 2000).unref();
      return;
    }
    this.ws.send(frame);
  }
}

/** onLiveChange of a subscriber no hub holds. */
const NOT_HELD = () => {};

export class Hub {
  readonly #byUser = new Map<string, Set<Subscriber>>();
  #count = 0;
  /** liveUserIds() as last computed; null once a user gained their first receiving subscriber or lost their last. */
  #liveUsers: string[] | null = null;
  /**
   * Receiving subscribers per user, kept as they change, so that how many users are live costs
   * nothing to ask: during a reconnect storm every join changes it, and walking every socket
   * for each live read made the storm quadratic.
   */
  readonly #receivingByUser = new Map<string, number>();
  /** The subscribers counted in #receivingByUser. */
  readonly #counted = new WeakSet<Subscriber>();
  readonly #onLiveChange = (sub: Subscriber) => this.#recount(sub, true);

  #recount(sub: Subscriber, present: boolean): void {
    const now = present && sub.receiving;
    if (now === this.#counted.has(sub)) return;
    const n = this.#receivingByUser.get(sub.userId) ?? 0;
    if (now) {
      this.#counted.add(sub);
      this.#receivingByUser.set(sub.userId, n + 1);
      if (n === 0) this.#liveUsers = null;
    } else {
      this.#counted.delete(sub);
      if (n <= 1) {
        this.#receivingByUser.delete(sub.userId);
        this.#liveUsers = null;
      } else this.#receivingByUser.set(sub.userId, n - 1);
    }
  }

  add(sub: Subscriber): void {
    let set = this.#byUser.get(sub.userId);
    if (!set) this.#byUser.set(sub.userId, (set = new Set()));
    if (!set.has(sub)) {
      set.add(sub);
      this.#count++;
      sub.onLiveChange = this.#onLiveChange;
      this.#recount(sub, true);
    }
  }

  remove(sub: Subscriber): void {
    const set = this.#byUser.get(sub.userId);
    if (!set?.delete(sub)) return;
    this.#count--;
    // A sync that ends after its socket went must not count it again.
    sub.onLiveChange = NOT_HELD;
    this.#recount(sub, false);
    if (set.size === 0) this.#byUser.delete(sub.userId);
  }

  /** Users with at least one socket. */
  get users(): number {
    return this.#byUser.size;
  }

  /** Sockets of one user. */
  countFor(userId: string): number {
    return this.#byUser.get(userId)?.size ?? 0;
  }

  /** Open authenticated sockets. */
  get connections(): number {
    return this.#count;
  }

  /**
   * liveUserIds() as a Postgres array literal, built once per change to the list: serializing a
   * thousand ids for every read cost more CPU than the read.
   */
  liveUserIdsLiteral(): string {
    const ids = this.liveUserIds();
    if (this.#literalOf !== ids) {
      this.#literal = `{${ids.map((id) => `"${id.replace(/[\\"]/g, '\\$&')}"`).join(',')}}`;
      this.#literalOf = ids;
    }
    return this.#literal;
  }

  #literal = '{}';
  #literalOf: string[] | null = null;

  /**
   * Users with at least one live or syncing subscriber: the only users whose changes are worth reading.
   * Cached: every live read asks, and 10,000 sockets are not worth walking 1,000 times a second.
   */
  liveUserIds(): string[] {
    return (this.#liveUsers ??= [...this.#receivingByUser.keys()]);
  }

  /** How many users liveUserIds() holds, without building it. */
  get liveUserCount(): number {
    return this.#receivingByUser.size;
  }

  /** A user's live subscribers. */
  *live(userId: string): Iterable<Subscriber> {
    const set = this.#byUser.get(userId);
    if (!set) return;
    for (const s of set) if (s.live && s.open) yield s;
  }

  /** A user's live subscribers and those whose sync read is running. */
  *receiving(userId: string): Iterable<Subscriber> {
    const set = this.#byUser.get(userId);
    if (!set) return;
    for (const s of set) if (s.receiving && s.open) yield s;
  }

  /** Every subscriber, for catch-up and shutdown. */
  *all(): Iterable<Subscriber> {
    for (const set of this.#byUser.values()) yield* set;
  }
}
