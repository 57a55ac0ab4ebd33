/**
 * The message on a user's channel: one transaction's changes for one user, as the relay
 * publishes it and every node reads it, and its changes in both directions (bigints travel as
 * strings). A relay of another version may publish to the same channels (epoch is absent from
 * older ones'), so this shape is a contract of its own, apart from how the fan-out runs.
 */
import type { Change, UnreadByType } from '../db/changes.js';
import type { WireAlert } from '../protocol.js';

/** One transaction's changes for one user, as published. bigints travel as strings. */
export interface Wire {
  /** The relay's epoch (see EPOCH in src/db/epoch.ts); absent from relays before it was sent. */
  epoch?: string;
  txid: string;
  xmin: string | null;
  /**
   * `replaced` and `outlived`: see AlertChange and DeleteChange (absent from relays of an older
   * pgbell, and when false). A node of an older pgbell sends an outlived delete, as it did.
   */
  changes: Array<{ kind: 'alert'; alert: WireAlert; txid: string; insertTxid: string; seq: string; replaced?: true } | { kind: 'delete'; id: string; userId: string; txid: string; outlived?: true }>;
  /**
   * The user's muted types, when this transaction changed them. Apart from `changes`, which a
   * node of an older pgbell reads as alerts and deletes only (it ignores this).
   */
  preferences?: { userId: string; muted: string[] };
  /** Unread count by type: what nodes of an older pgbell read (they must keep working during a rolling deploy). */
  unread: Record<string, number>;
  /** The counts by type (unread and unseen); absent from relays of an older pgbell. */
  counts?: UnreadByType;
}

/** Counts by type as published: both shapes, for old and new nodes. */
export function countsToWire(byType: UnreadByType | undefined): Pick<Wire, 'unread' | 'counts'> {
  const unread: Record<string, number> = {};
  for (const [type, c] of Object.entries(byType ?? {})) unread[type] = c.unread;
  return { unread, counts: byType ?? {} };
}

/** Counts by type as received: from an older relay (unread only), unseen is taken to be unread. */
export function countsFromWire(wire: Pick<Wire, 'unread' | 'counts'>): UnreadByType {
  if (wire.counts) return wire.counts;
  const out: UnreadByType = {};
  for (const [type, n] of Object.entries(wire.unread ?? {})) out[type] = { unread: n, unseen: n };
  return out;
}

/** A transaction's changes for one user as published: alerts and deletes, and apart from them a change of preferences. */
export function changesToWire(changes: readonly Change[]): Pick<Wire, 'changes' | 'preferences'> {
  const out: Wire['changes'] = [];
  let preferences: Wire['preferences'];
  for (const c of changes) {
    if (c.kind === 'preferences') preferences = { userId: c.userId, muted: c.muted };
    else if (c.kind === 'alert') out.push({ kind: 'alert', alert: c.alert, txid: c.txid.toString(), insertTxid: c.insertTxid.toString(), seq: c.seq.toString(), ...(c.replaced ? { replaced: true as const } : {}) });
    else out.push({ kind: 'delete', id: c.id, userId: c.userId, txid: c.txid.toString(), ...(c.outlived ? { outlived: true as const } : {}) });
  }
  return { changes: out, ...(preferences ? { preferences } : {}) };
}

/** The changes as received, a change of preferences first (as byRow orders a transaction). */
export function changesFromWire(wire: Pick<Wire, 'txid' | 'changes' | 'preferences'>): Change[] {
  const out: Change[] = wire.preferences ? [{ kind: 'preferences', txid: BigInt(wire.txid), userId: wire.preferences.userId, muted: wire.preferences.muted }] : [];
  for (const c of wire.changes) {
    out.push(
      c.kind === 'alert'
        ? { kind: 'alert', alert: c.alert, txid: BigInt(c.txid), insertTxid: BigInt(c.insertTxid), seq: BigInt(c.seq), ...(c.replaced === true ? { replaced: true as const } : {}) }
        : { kind: 'delete', id: c.id, userId: c.userId, txid: BigInt(c.txid), ...(c.outlived === true ? { outlived: true as const } : {}) },
    );
  }
  return out;
}
