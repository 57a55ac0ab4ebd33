/**
 * The recent-transaction memory: live transactions kept a few seconds for the sync reads that
 * did not see them. Bounded by age, count and bytes; separate from Delivery because it is a
 * self-contained buffer with its own limits, which live steps fill and syncs read.
 */
import type { Change, UnreadByType } from '../db/changes.js';
import { approxBytes } from '../util/size.js';

/** How long, and how many, live transactions are kept for sync reads that did not see them (see RecentTransactions). */
const RECENT_MS = 10_000;
const RECENT_MAX = 2_000;
/**
 * And how many bytes of their rows (see src/util/size.ts): a count alone let a burst of bulk
 * transactions (a backfill of 2,000 transactions of 10,000 rows) keep every row for 10 s.
 */
export const RECENT_MAX_BYTES = 32 << 20;

/** A transaction a live step handled, kept a while (see RecentTransactions). */
export interface Recent {
  tx: bigint;
  group: Change[];
  unread: Map<string, UnreadByType>;
  horizon: bigint;
  at: number;
  /** What `group` holds, about (see src/util/size.ts). */
  bytes: number;
}

/**
 * Live transactions of the last RECENT_MS, for a sync read that did not see them: a
 * transaction can stream (WAL mode) or be published (Redis mode) a moment before it is
 * visible to other sessions' snapshots, so a live step may have handled it before a
 * subscriber's read began and the read still missed it.
 */
export class RecentTransactions {
  #recent: Recent[] = [];
  /** The `bytes` of #recent, together. */
  #recentBytes = 0;

  readonly #o: { recentMaxBytes?: number | undefined };

  constructor(opts: { recentMaxBytes?: number | undefined }) {
    this.#o = opts;
  }

  /** The transactions kept, oldest first. */
  get entries(): readonly Recent[] {
    return this.#recent;
  }

  /** Bytes of rows the recent-transaction memory holds now, about (a gauge). */
  get bytes(): number {
    return this.#recentBytes;
  }

  /** Forgets every transaction kept (a new epoch: nothing learnt on the old one holds). */
  clear(): void {
    this.#recent = [];
    this.#recentBytes = 0;
  }

  /**
   * Keeps a live transaction for the syncs that may not have seen it, dropping the oldest past
   * RECENT_MS, RECENT_MAX transactions or recentMaxBytes (the newest too, if it alone is more).
   * The oldest are the least likely to be needed: a transaction is left out of a sync read only
   * while it is not yet visible to other sessions, a moment after it streamed.
   */
  remember(tx: bigint, group: Change[], unread: Map<string, UnreadByType>, horizon: bigint): void {
    const now = performance.now();
    let bytes = 0;
    for (const c of group) bytes += approxBytes(c);
    this.#recent.push({ tx, group, unread, horizon, at: now, bytes });
    this.#recentBytes += bytes;
    const maxBytes = this.#o.recentMaxBytes ?? RECENT_MAX_BYTES;
    let drop = 0;
    while (drop < this.#recent.length && (now - this.#recent[drop]!.at > RECENT_MS || this.#recent.length - drop > RECENT_MAX || this.#recentBytes > maxBytes)) {
      this.#recentBytes -= this.#recent[drop++]!.bytes;
    }
    if (drop > 0) this.#recent.splice(0, drop);
  }
}
