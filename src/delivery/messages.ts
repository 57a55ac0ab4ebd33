/**
 * What a change becomes on the wire: its message body (serialized once, shared by every socket
 * of the user), the trailing counts and cursor each socket gets, and which socket wants
 * which change. Pure functions of the rows, used by live steps and syncs alike; separate from
 * Delivery because none of it depends on delivery's state.
 */
import { countsJson, countsOf, sendable, type Change, type UnreadByType } from '../db/changes.js';
import type { Subscriber } from './hub.js';
import type { UserChanges } from './stash.js';

/**
 * One transaction's changes for one user, ready for any of its sockets (each alert serialized
 * once); `all` leaves out what is never sent (an outlived delete), though offering it records
 * its transaction.
 */
export function userChanges(tx: bigint, list: Change[], byType: UnreadByType | undefined): UserChanges {
  const kinds = list.map((c) => (c.kind === 'alert' ? (c.insertTxid === tx ? 'notification' : 'update') : c.kind));
  const alertJson = list.map((c) => (c.kind === 'alert' ? JSON.stringify(c.alert) : ''));
  return { list, all: list.flatMap((c, k) => (sendable(c) ? [k] : [])), kinds, alertJson, bodies: list.map((c, k) => body(c, kinds[k] === 'notification', alertJson[k]!)), byType };
}

/**
 * Whether a socket gets a change, given its type filter and the user's muted types: deletes
 * always (a tombstone has no type, and an unknown id is ignored by clients), preferences always,
 * an alert if its type is one the socket subscribed to, or with no filter one not muted.
 */
export function wants(sub: { readonly types: ReadonlySet<string> | null; readonly muted: ReadonlySet<string> }, c: Change, muted: ReadonlySet<string> = sub.muted): boolean {
  if (c.kind !== 'alert') return true;
  return sub.types === null ? !muted.has(c.alert.type) : sub.types.has(c.alert.type);
}

/**
 * What a socket is sent of a change it may already hold (`mayHave`: the alert existed before
 * this transaction, or before what the client last saw): the change if it wants it; a delete of
 * the alert when it does not, since an UPDATE moved its type out of the socket's filter or into
 * a muted type, and the client would otherwise keep showing it; otherwise nothing. A delete of
 * an id the client never had is ignored by it.
 */
export function shown(sub: { readonly types: ReadonlySet<string> | null; readonly muted: ReadonlySet<string> }, c: Change, mayHave: boolean, muted: ReadonlySet<string> = sub.muted): Change | null {
  if (wants(sub, c, muted)) return c;
  if (c.kind !== 'alert' || !mayHave) return null;
  return { kind: 'delete', txid: c.txid, id: c.alert.id, userId: c.alert.userId };
}

/**
 * Whether a client may hold this alert already, given whether it may hold it from this
 * transaction's point of view (`before`: the alert existed before it, or before what the client
 * last saw): also when it is `replaced` (deleted or moved away, and back), whatever its insert.
 */
export function mayHold(c: Change, before: boolean): boolean {
  return before || (c.kind === 'alert' && c.replaced === true);
}

export function userOf(c: Change): string {
  return c.kind === 'alert' ? c.alert.userId : c.userId;
}

/** A message without its trailing unread count and cursor, so one serialization serves every socket. */
export function body(c: Change, isNew: boolean, alertJson = c.kind === 'alert' ? JSON.stringify(c.alert) : ''): string {
  if (c.kind === 'delete') return `{"type":"delete","id":${JSON.stringify(c.id)}`;
  if (c.kind === 'preferences') return `{"type":"preferences","muted":${JSON.stringify(c.muted)}`;
  return `{"type":"${isNew ? 'notification' : 'update'}","alert":${alertJson}`;
}

/** `counts` is countsJson()'s fields: the same for every socket of the user with the same types. */
export function frame(b: string, counts: string, cursor: string): string {
  return `${b},${counts},"cursor":"${cursor}"}`;
}

/** The counts fields a subscriber gets with this transaction's changes (computed once for every socket without a type filter). */
export function countsFor(ch: UserChanges, types: ReadonlySet<string> | null): string {
  if (types === null) return (ch.countsAll ??= countsJson(countsOf(ch.byType, null)));
  return countsJson(countsOf(ch.byType, types));
}
