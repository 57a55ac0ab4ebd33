/**
 * What a read of changes gives: the changes themselves (an alert written, an alert deleted),
 * a batch of them with its users' unread counts, and a read by cursor's snapshot horizon. The
 * sources, delivery and fan-out pass these along; apart from the reads so that the reads, the
 * decoding of their rows and the bell's list can all name them without importing one another.
 */
import type { WireAlert } from '../protocol.js';

export interface AlertChange {
  kind: 'alert';
  /** The transaction that last inserted or updated the row. */
  txid: bigint;
  /** The transaction that inserted it: tells a new alert from a change to a known one. */
  insertTxid: bigint;
  seq: bigint;
  /**
   * A tombstone of this alert and user exists (it was deleted, or moved away, and is theirs
   * again): a client may hold the alert from before, whatever its insert says, so a socket that
   * does not want it now is sent a delete (see shown()). The tombstone itself is `outlived` while
   * the row exists (see OUTLIVED in change-rows.ts). Absent from changes a stream carried, which
   * come in commit order and need it not.
   */
  replaced?: true;
  alert: WireAlert;
}

export interface DeleteChange {
  kind: 'delete';
  txid: bigint;
  id: string;
  userId: string;
  /**
   * Its alert and user have a row now (see OUTLIVED in change-rows.ts): never sent, the row
   * stands in for it; its transaction counts as sent like any other.
   */
  outlived?: true;
}

/** Whether a client is sent this change at all (an outlived delete is not). */
export function sendable(c: Change): boolean {
  return c.kind !== 'delete' || c.outlived !== true;
}

/** The user's muted types changed (the whole new set, sorted). */
export interface PreferencesChange {
  kind: 'preferences';
  txid: bigint;
  userId: string;
  muted: string[];
}

export type Change = AlertChange | DeleteChange | PreferencesChange;

export interface ChangeBatch {
  /** In transaction order (the order asked for, or ascending), then row order; deletes after rows. */
  changes: Change[];
  /** Unread counts by type of every user with a change (and, for reads by cursor, every user asked about). */
  unread: Map<string, UnreadByType>;
  /** The muted types of the same users, as of the read (absent: none). */
  muted?: Map<string, string[]>;
}

/**
 * The counts a reader read with some transactions' changes, in the same snapshot: by type, and
 * the muted types, of every user with a change. What a forwarded source hands delivery with the
 * changes (see SourceEvents in src/sources/types.ts), so that nothing is read twice.
 */
export interface Counted {
  unread: ReadonlyMap<string, UnreadByType>;
  muted: ReadonlyMap<string, readonly string[]>;
}

export interface SinceBatch extends ChangeBatch {
  /** pg_snapshot_xmin of the read's snapshot: the new horizon for whoever was caught up. */
  xmin: bigint;
  /** First transaction id not yet handed out; a cursor beyond it is from elsewhere. */
  xmax: bigint;
  /** Transactions in progress in the read's snapshot (between xmin and xmax): it did not see them. */
  xip: Set<bigint>;
  /** Tombstones at or below this were pruned; an older cursor may have missed a delete. */
  prunedTxid: bigint;
  /** The epoch this read was taken in (see EPOCH): the one cursors from it belong to. */
  epoch: string;
  /** Users with more changes than the limit: only the oldest `limit` were read. */
  truncated: Set<string>;
  /**
   * For each truncated user, the transaction its read stopped in (that transaction may be cut
   * short): everything of the user's below it was read.
   */
  cuts: Map<string, bigint>;
}

/** One type's counts: alerts not read, and of those the ones not seen (archived alerts count in neither). */
export interface TypeCounts {
  unread: number;
  unseen: number;
}

/** A user's counts by alert type, as the reads return them (types with nothing unread are absent). */
export type UnreadByType = Record<string, TypeCounts>;

/** What every message and response that carries counts carries. */
export interface Counts {
  unread: number;
  unseen: number;
  byType: UnreadByType;
}

export const NO_COUNTS: Counts = Object.freeze({ unread: 0, unseen: 0, byType: Object.freeze({}) as UnreadByType });

/** The counts a subscriber sees: of the types it subscribed to, or of all. */
export function countsOf(byType: UnreadByType | undefined, types: ReadonlySet<string> | null): Counts {
  let unread = 0;
  let unseen = 0;
  const out: UnreadByType = {};
  for (const [type, c] of Object.entries(byType ?? {})) {
    if (types !== null && !types.has(type)) continue;
    out[type] = c;
    unread += c.unread;
    unseen += c.unseen;
  }
  return { unread, unseen, byType: out };
}

/** The counts as the fields of a JSON object, without braces: `"unread":1,"unseen":0,"byType":{…}`. */
export function countsJson(c: Counts): string {
  return `"unread":${c.unread},"unseen":${c.unseen},"byType":${JSON.stringify(c.byType)}`;
}

/** Whose changes a live read returns: these users, a literal list (see Hub), or everyone's. */
export type UserFilter = readonly string[] | { literal: string } | 'all';

/** Whether a read saw transaction `tx` (it had committed, or aborted, before the read's snapshot). */
export function sawTx(read: Pick<SinceBatch, 'xmin' | 'xmax' | 'xip'>, tx: bigint): boolean {
  return tx < read.xmin || (tx < read.xmax && !read.xip.has(tx));
}
