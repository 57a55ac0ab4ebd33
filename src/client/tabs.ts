/**
 * One connection per browser: the tabs of one user elect a leader with the Web Locks API (the
 * lock is held until the tab closes, freezes or stops; the next tab in the lock's queue gets it
 * at once) and talk over a BroadcastChannel of the same name. The name holds the page's origin,
 * the daemon's URL and the user id, so tabs of different users never share a channel.
 *
 * This file only elects and carries messages; what they mean is the client's (client.ts).
 */
import type { Alert, ChannelConstructor, ChannelLike, LocksLike, State } from './types.js';

/** What a tab needs to carry on from the leader's state, should it become the leader. */
export interface Snapshot {
  alerts: readonly Alert[];
  unread: number;
  unseen: number;
  byType: State['byType'];
  muted: State['muted'];
  hasMore: boolean;
  status: State['status'];
  transport: State['transport'];
  /** The last cursor the leader received: a new leader resumes from it. */
  cursor: string | undefined;
  /** The ids of the list's pages (where `loadMore` goes on from). */
  paged: readonly string[];
  types: readonly string[];
}

/** The actions a follower asks the leader to carry out. */
export type Op = 'markRead' | 'markAllRead' | 'markSeen' | 'archive' | 'unarchive' | 'setMuted' | 'loadMuted' | 'subscribe' | 'loadMore';

export type TabMessage =
  | { t: 'hello' } // a new follower asks for the state
  | { t: 'leader'; s: Snapshot } // a tab took over the connection
  | { t: 'state'; s: Snapshot }
  | { t: 'notify'; alerts: Alert[] } // alerts new to the leader, for `notification` listeners
  | { t: 'call'; id: string; op: Op; args: unknown[] }
  | { t: 'reply'; id: string; error?: string }
  | { t: 'wake' }; // a follower saw the network or the page come back: the leader checks its socket

/** Web Locks and BroadcastChannel, if this environment has both (and sharing is not turned off). */
export function tabApis(o: { shareTabs?: boolean; locks?: LocksLike; BroadcastChannel?: ChannelConstructor }): { locks: LocksLike; Channel: ChannelConstructor } | null {
  if (o.shareTabs === false) return null;
  const g = globalThis as unknown as { navigator?: { locks?: LocksLike }; BroadcastChannel?: ChannelConstructor };
  const locks = o.locks ?? g.navigator?.locks;
  const Channel = o.BroadcastChannel ?? g.BroadcastChannel;
  return locks && Channel ? { locks, Channel } : null;
}

/** The lock's and the channel's name for a user of a daemon, on this page's origin. */
export function groupName(url: string, userId: string): string {
  const origin = (globalThis as { location?: { origin?: string } }).location?.origin ?? '';
  return `pgbell|${origin}|${url}|${userId}`;
}

export class TabGroup {
  readonly #channel: ChannelLike;
  #abort = new AbortController();
  #release: (() => void) | null = null;
  #closed = false;

  constructor(
    readonly name: string,
    private readonly locks: LocksLike,
    Channel: ChannelConstructor,
    private readonly hooks: { lead(): void; message(m: TabMessage): void },
  ) {
    this.#channel = new Channel(name);
    this.#channel.onmessage = (ev) => {
      if (!this.#closed && ev.data && typeof ev.data === 'object') hooks.message(ev.data as TabMessage);
    };
    this.#queue();
  }

  /** Waits in the lock's queue; holds the lock from `lead()` until close() or resign(). */
  #queue(): void {
    const signal = this.#abort.signal;
    this.locks
      .request(this.name, { signal }, () => {
        if (this.#closed || signal.aborted) return Promise.resolve();
        return new Promise<void>((resolve) => {
          this.#release = resolve;
          this.hooks.lead();
        });
      })
      .catch(() => {}); // aborted while waiting
  }

  post(m: TabMessage): void {
    if (!this.#closed) this.#channel.postMessage(m);
  }

  /** Gives the lock up (or leaves its queue) and queues again: another tab leads meanwhile. */
  resign(): void {
    this.#drop();
    this.#abort = new AbortController();
    this.#queue();
  }

  close(): void {
    this.#closed = true;
    this.#drop();
    this.#channel.onmessage = null;
    this.#channel.close();
  }

  #drop(): void {
    this.#abort.abort();
    this.#release?.();
    this.#release = null;
  }
}
