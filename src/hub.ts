/**
 * Who is connected: user id → that user's subscribers (one per authenticated socket). A
 * subscriber knows what its client has seen (its cursor), so fan-out can skip what it already
 * has and hand it a cursor to resume from. Alerts reach a user's sockets and no one else's
 * because this map is the only way to a socket.
 */
import type { WebSocket } from 'ws';
import type { CursorState } from './cursor.js';

export class Subscriber {
  /** Set once the first sync has run; live deliveries skip a subscriber until then. */
  cursor: CursorState | null = null;
  /** Last unread count sent, for a `ready` after re-authentication. */
  unread = 0;
  /** Alert types this socket asked for ({"type":"subscribe"}); null means all. */
  types: ReadonlySet<string> | null = null;
  /** Settles once the first sync is over (or will never happen: socket closed, daemon stopping). */
  readonly synced: Promise<void>;
  #settle!: () => void;

  constructor(
    readonly ws: WebSocket,
    readonly userId: string,
    readonly email: string | null,
    /** The cursor the client sent with its first auth message, if any. */
    readonly after: string | null,
  ) {
    this.synced = new Promise((resolve) => (this.#settle = resolve));
  }

  settle(): void {
    this.#settle();
  }

  get live(): boolean {
    return this.cursor !== null;
  }

  get open(): boolean {
    return this.ws.readyState === this.ws.OPEN;
  }

  send(frame: string): void {
    if (this.open) this.ws.send(frame);
  }
}

export class Hub {
  readonly #byUser = new Map<string, Set<Subscriber>>();
  #count = 0;

  add(sub: Subscriber): void {
    let set = this.#byUser.get(sub.userId);
    if (!set) this.#byUser.set(sub.userId, (set = new Set()));
    if (!set.has(sub)) {
      set.add(sub);
      this.#count++;
    }
  }

  remove(sub: Subscriber): void {
    const set = this.#byUser.get(sub.userId);
    if (!set?.delete(sub)) return;
    this.#count--;
    if (set.size === 0) this.#byUser.delete(sub.userId);
  }

  /** Open authenticated sockets. */
  get connections(): number {
    return this.#count;
  }

  /** Users with at least one live subscriber: the only users whose changes are worth reading. */
  liveUserIds(): string[] {
    const ids: string[] = [];
    for (const [id, set] of this.#byUser) {
      for (const s of set) {
        if (s.live) {
          ids.push(id);
          break;
        }
      }
    }
    return ids;
  }

  /** A user's live subscribers. */
  *live(userId: string): Iterable<Subscriber> {
    const set = this.#byUser.get(userId);
    if (!set) return;
    for (const s of set) if (s.live && s.open) yield s;
  }

  /** Every subscriber, for catch-up and shutdown. */
  *all(): Iterable<Subscriber> {
    for (const set of this.#byUser.values()) yield* set;
  }
}
