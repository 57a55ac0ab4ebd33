/**
 * What a client has seen, as a set of transactions: every transaction id below `horizon`,
 * plus the ids in `seen` (all at or above it). See sql/000003_changes.sql for why this, and
 * not an alert id or a timestamp, is gap-free when transactions commit out of order.
 *
 * On the wire it is opaque: `1.<epoch>.<horizon>.<delta>.<delta>…`, numbers in base 36,
 * each delta counted from the horizon. The epoch (the database's id and the server's timeline,
 * see EPOCH in src/db/epoch.ts) makes a cursor from another database (a recreated dev
 * database, another deployment) or from before a failover a reset instead of a silent gap.
 */
import type { SinceBatch } from '../db/changes.js';

/** Ids above the horizon a cursor carries at most; beyond that the oldest are dropped. */
export const MAX_CURSOR_IDS = 64;
/**
 * Ids above the horizon a live cursor keeps in memory at most. A transaction held open (a
 * session idle in transaction) stops the horizon; without a bound, every transaction of the
 * user after it would stay in every socket's cursor. Past the bound the oldest are forgotten:
 * nothing is lost (a forgotten id only makes a later re-read send that transaction again),
 * and the wire form carries MAX_CURSOR_IDS anyway.
 */
export const MAX_MEMORY_IDS = 1024;
const VERSION = '1';

/**
 * What a sync read saw above its horizon: every id below `xmax` that is not in `xip` had
 * finished when it read, and its changes of the user are in what the read found (a row it
 * stamped and a later transaction changed again is there in the later state). Shared by every
 * cursor the read made.
 */
export interface ReadSnapshot {
  readonly xmax: bigint;
  readonly xip: ReadonlySet<bigint>;
}

export class CursorState {
  #horizon: bigint;
  /**
   * In memory only: the snapshot of the read that last synced this socket, until the horizon
   * passes its xmax. A transaction it saw counts as seen though the cursor does not name it: no
   * row is stamped with it any more when a later one changed each of its rows before the read
   * (the alert went out as new, in that later state). A live step that sends it afterwards (it
   * waited behind a commit a synchronous standby held invisible) would repeat the alert, older;
   * a catch-up would take the alert for new again. Not on the wire: a resume on another
   * connection may repeat such an alert (as the guarantee allows), nothing is lost.
   */
  #read: ReadSnapshot | null;
  /**
   * The ids at or above the horizon that were seen, ascending (a binary search finds one). No
   * Set beside it: every socket holds a cursor, mostly with no id or a few, and a Set's table
   * would cost each idle socket more than the ids.
   */
  #sorted: bigint[] = [];
  /** encode()'s last result; every socket of a busy user encodes after every message. */
  #encoded: { databaseId: string; text: string } | null = null;

  /** How many ids above the horizon are kept (see MAX_MEMORY_IDS). */
  readonly #bound: number;

  /**
   * `bound`: ids kept at most, the oldest forgotten beyond it. Only a replay's record of what it
   * sent is unbounded (see sendSync in replay.ts): a forgotten id there is a transaction sent
   * twice on one connection, and it holds no more than the replay read.
   */
  constructor(horizon: bigint, seen: Iterable<bigint> = [], read: ReadSnapshot | null = null, bound = MAX_MEMORY_IDS) {
    this.#horizon = horizon;
    this.#bound = bound;
    this.#read = read !== null && read.xmax > horizon ? read : null;
    for (const t of seen) this.add(t);
  }

  get horizon(): bigint {
    return this.#horizon;
  }

  /** Ids at or above the horizon that were seen, ascending. */
  get ids(): bigint[] {
    return [...this.#sorted];
  }

  /** The snapshot of the read that last synced this cursor, while it still says more than the horizon (see #read). */
  get read(): ReadSnapshot | null {
    return this.#read;
  }

  /** The highest id seen above the horizon, or null. */
  get last(): bigint | null {
    return this.#sorted.length > 0 ? this.#sorted[this.#sorted.length - 1]! : null;
  }

  /** How many ids above the horizon are kept (at most its bound, MAX_MEMORY_IDS but in a replay). */
  get size(): number {
    return this.#sorted.length;
  }

  has(txid: bigint): boolean {
    if (txid < this.#horizon) return true;
    const r = this.#read;
    if (r !== null && txid < r.xmax && !r.xip.has(txid)) return true;
    const a = this.#sorted;
    const i = a.length === 0 || a[a.length - 1]! < txid ? a.length : this.#search(txid);
    return i < a.length && a[i] === txid;
  }

  add(txid: bigint): void {
    if (txid < this.#horizon) return;
    const a = this.#sorted;
    // Transactions mostly arrive in ascending order: an append, else a binary-search insert.
    if (a.length === 0 || a[a.length - 1]! < txid) a.push(txid);
    else {
      const i = this.#search(txid);
      if (a[i] === txid) return;
      a.splice(i, 0, txid);
    }
    if (a.length > this.#bound) a.shift();
    this.#encoded = null;
  }

  /** The first index whose id is at or above `txid`. */
  #search(txid: bigint): number {
    const a = this.#sorted;
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid]! < txid) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Everything below `horizon` is known to be seen; forget the ids it now covers. */
  advance(horizon: bigint): void {
    if (horizon <= this.#horizon) return;
    this.#horizon = horizon;
    if (this.#read !== null && horizon >= this.#read.xmax) this.#read = null;
    const a = this.#sorted;
    let n = 0;
    while (n < a.length && a[n]! < horizon) n++;
    // All covered (the usual case): a new empty array lets the old one's storage go.
    if (n === a.length) this.#sorted = [];
    else if (n > 0) a.splice(0, n);
    this.#encoded = null;
  }

  /**
   * The wire form. When more than MAX_CURSOR_IDS ids are above the horizon (a transaction held
   * open for a long time stops the horizon), the oldest are left out: a resume then re-sends
   * those transactions' alerts, with the same ids, rather than skipping anything.
   */
  encode(databaseId: string): string {
    if (this.#encoded?.databaseId === databaseId) return this.#encoded.text;
    const ids = this.#sorted.slice(-MAX_CURSOR_IDS);
    const parts = [VERSION, databaseId, this.#horizon.toString(36), ...ids.map((t) => (t - this.#horizon).toString(36))];
    const text = parts.join('.');
    this.#encoded = { databaseId, text };
    return text;
  }
}

export type DecodedCursor = { ok: true; cursor: CursorState; epoch: string } | { ok: false; reason: string };

/**
 * Parses a client's cursor. Never throws. Whether it belongs to the epoch being read is for the
 * caller to ask (see epochProblem), with the epoch of the read it resumes with.
 */
export function decodeCursor(text: string): DecodedCursor {
  if (text.length > 2048) return { ok: false, reason: 'cursor is too long' };
  const parts = text.split('.');
  if (parts[0] !== VERSION || parts.length < 3 || !/^[0-9a-z-]{1,64}$/.test(parts[1]!)) return { ok: false, reason: 'cursor is not one pgbell issued' };
  const nums: bigint[] = [];
  for (const p of parts.slice(2)) {
    if (!/^[0-9a-z]{1,13}$/.test(p)) return { ok: false, reason: 'cursor is not one pgbell issued' };
    nums.push(parseBase36(p));
  }
  const [horizon, ...deltas] = nums as [bigint, ...bigint[]];
  if (horizon >= 1n << 64n) return { ok: false, reason: 'cursor is not one pgbell issued' };
  return { ok: true, cursor: new CursorState(horizon, deltas.map((d) => horizon + d)), epoch: parts[1]! };
}

/**
 * Why a cursor of epoch `cursor` cannot be read in epoch `now`, or null when it can. Cursors
 * issued before epochs named a timeline carry the database's id alone: valid on timeline 1,
 * where no failover has happened.
 */
export function epochProblem(cursor: string, now: string): string | null {
  if (cursor === now || `${cursor}-1` === now) return null;
  const db = (e: string) => e.split('-').slice(0, 2).join('-');
  if (db(cursor) !== db(now)) return 'cursor is from another database';
  return 'the database failed over or was restored (a new timeline): transactions after the cursor may have been lost';
}

/**
 * Why a read cannot resume `from` (a cursor of `epoch`) for `userId`, or null when it can.
 * Asked with the read's own epoch, so a failover between two reads cannot slip through.
 */
export function resumeProblem(from: CursorState, epoch: string, res: SinceBatch, userId: string, maxReplay: number): string | null {
  return (
    epochProblem(epoch, res.epoch) ??
    (from.horizon > res.xmin
      ? 'cursor is ahead of this database'
      : from.last !== null && from.last >= res.xmax
        ? // The database has not handed this id out: the transaction the cursor saw under it was
          // lost (a crash with synchronous_commit = off), and the id will be given to another.
          'cursor holds a transaction this database has not committed (lost in a crash?)'
      : res.prunedTxid > 0n && from.horizon <= res.prunedTxid
        ? 'cursor is older than the retained deletes'
        : res.truncated.has(userId)
          ? `more than ${maxReplay} changes since the cursor`
          : null)
  );
}

function parseBase36(s: string): bigint {
  let n = 0n;
  for (const ch of s) n = n * 36n + BigInt(parseInt(ch, 36));
  return n;
}
