/**
 * The message on a user's channel: one transaction's changes for one user, as the relay
 * publishes it and every node reads it, and its changes in both directions (bigints travel as
 * strings). A relay of another version may publish to the same channels (epoch is absent from
 * older ones'), so this shape is a contract of its own, apart from how the fan-out runs.
 */
import type { Change, TypeCounts, UnreadByType } from '../db/changes.js';
import type { WireAlert } from '../protocol.js';

/** One transaction's changes for one user, as published. bigints travel as strings. */
export interface Wire {
  /** The relay's epoch (see EPOCH in src/db/epoch.ts); absent from relays before it was sent. */
  epoch?: string;
  txid: string;
  xmin: string | null;
  changes: Array<{ kind: 'alert'; alert: WireAlert; txid: string; insertTxid: string; seq: string } | { kind: 'delete'; id: string; userId: string; txid: string } | { kind: 'preferences'; userId: string; muted: string[]; txid: string }>;
  /** Counts by type; a relay of an older pgbell sends a bare unread number per type. */
  unread: Record<string, TypeCounts | number>;
}

/** Counts by type as received: a bare number (an older relay) counts as unread and unseen. */
export function countsFromWire(unread: Wire['unread']): UnreadByType {
  const out: UnreadByType = {};
  for (const [type, c] of Object.entries(unread ?? {})) out[type] = typeof c === 'number' ? { unread: c, unseen: c } : c;
  return out;
}

/** A change as published. */
export function changeToWire(c: Change): Wire['changes'][number] {
  if (c.kind === 'preferences') return { kind: 'preferences', userId: c.userId, muted: c.muted, txid: c.txid.toString() };
  return c.kind === 'alert'
    ? { kind: 'alert' as const, alert: c.alert, txid: c.txid.toString(), insertTxid: c.insertTxid.toString(), seq: c.seq.toString() }
    : { kind: 'delete' as const, id: c.id, userId: c.userId, txid: c.txid.toString() };
}

/** A change as received. */
export function changeFromWire(c: Wire['changes'][number]): Change {
  if (c.kind === 'preferences') return { kind: 'preferences', userId: c.userId, muted: c.muted, txid: BigInt(c.txid) };
  return c.kind === 'alert'
    ? { kind: 'alert', alert: c.alert, txid: BigInt(c.txid), insertTxid: BigInt(c.insertTxid), seq: BigInt(c.seq) }
    : { kind: 'delete', id: c.id, userId: c.userId, txid: BigInt(c.txid) };
}
