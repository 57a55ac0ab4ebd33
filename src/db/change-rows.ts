/**
 * The one row shape every read of changes returns (`Row`, tagged: an alert, a delete, a user's
 * unread counts, the snapshot): the SQL pieces that select it, how the rows become changes, and
 * the order changes are handed on in. Shared by the live reads and the reads by cursor
 * (changes.ts); the unread counts by the bell's list (alerts.ts) too.
 */
import type { Change, ChangeBatch, UnreadByType } from './change-types.js';

export interface Row {
  k: 'a' | 'd' | 'u' | 's' | 'p';
  id: string | null;
  userId: string | null;
  type: string | null;
  title: string | null;
  message: string | null;
  link: string | null;
  data: unknown;
  read: boolean | null;
  seen: boolean | null;
  archived: boolean | null;
  createdAt: Date | null;
  itx: string | null;
  tx: string | null;
  seq: string | null;
  n: string | null;
  /** 'u': the user's muted types now; 'p': the new set. */
  m: string[] | null;
}

/**
 * A user's unread and unseen counts per alert type (muted types left out), as a JSON object {"<type>": {"unread": n,
 * "unseen": n}}, from the bookkeeping's partial counts index alone (not read, not archived;
 * unseen is the part of it not seen: an alert read is also seen).
 */
export const UNREAD_BY_TYPE = (user: string) => `(SELECT coalesce(jsonb_object_agg(c.type, jsonb_build_object('unread', c.n, 'unseen', c.s)), '{}') FROM (
      SELECT x.type, count(*) AS n, count(*) FILTER (WHERE NOT x.seen) AS s FROM "AlertChange" x
       WHERE x."userId" = ${user} AND NOT x.read AND NOT x.archived AND x.type <> ALL(${MUTED(user)}) GROUP BY x.type) c)`;

/**
 * A tombstone `t` of an alert its user has again now (re-inserted, or moved back to them): the
 * table, not the order of transaction ids, says what the client is to hold. A read with flags
 * (see changeRows) marks such a tombstone `outlived`, and it is never sent. Its transaction id may
 * be higher than the one that brought the row back (that one began first and committed last), so
 * sent in id order it would follow the row and delete an alert that exists; sent alone (a read
 * that ends between the two, a later page) it would do the same. The row itself is `replaced`
 * (see AlertChange) and stands in for it. Its transaction is still one the client was sent, as
 * any other: a cursor (and a Redis node's, from an empty message) records it, so the stream's
 * copy of the same delete, unflagged, is not sent later. A tombstone whose alert is gone again
 * is sent: the client is to hold nothing, whatever the order.
 */
export const OUTLIVED = (t: string) =>
  // One probe per delete, among its user's rows (OFFSET 0 keeps the planner from hashing every
  // alert of the table instead, which it would when it expects many deletes).
  `EXISTS (SELECT 1 FROM "AlertChange" o WHERE o."userId" = ${t}."userId" AND o.id = ${t}.id OFFSET 0)`;

/** A user's muted types (an empty array for none). */
export const MUTED = (user: string) => `coalesce((SELECT p.muted FROM preference p WHERE p."userId" = ${user}), '{}')`;

/** The 'u' row of a user: its counts (in data) and its muted types (in m). */
export const USER_ROW = (user: string) => `'u', NULL, ${user}, NULL, NULL, NULL, NULL, ${UNREAD_BY_TYPE(user)}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, to_jsonb(${MUTED(user)})`;

/**
 * The rows of the CTEs every read defines: changed alerts (`ch`), deletes (`dl`) and changed
 * preferences (`pf`: "userId", muted, tx), as `Row`s. With `flags` (every read but the live
 * read of a stream's transactions), a delete that is `outlived` (see OUTLIVED) has 'o' in `n`
 * and an alert row that is `replaced` has 'r' (see AlertChange). A stream's transactions come
 * in commit order, a delete before the row that brought its alert back, and the transactions the
 * stream carried beside them have no flags: a delete not sent would have no row to stand in for it.
 */
export const changeRows = (flags: boolean) => `SELECT 'a' AS k, id, "userId", type, title, message, link, data, read, seen, archived, "createdAt", itx, tx, seq,
           ${flags ? `CASE WHEN EXISTS (SELECT 1 FROM "AlertTombstone" r WHERE r."userId" = ch."userId" AND r.id = ch.id) THEN 'r' END` : 'NULL::text'} AS n, NULL::jsonb AS m FROM ch
    UNION ALL
    SELECT 'd', id, "userId", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, tx, NULL, ${flags ? `CASE WHEN ${OUTLIVED('dl')} THEN 'o' END` : 'NULL'}, NULL FROM dl
    UNION ALL
    SELECT 'p', NULL, "userId", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, tx, NULL, NULL, to_jsonb(muted) FROM pf`;

export function collect(rows: Row[]): ChangeBatch {
  const changes: Change[] = [];
  const unread = new Map<string, UnreadByType>();
  const muted = new Map<string, string[]>();
  for (const r of rows) {
    if (r.k === 'a') {
      changes.push({
        kind: 'alert',
        txid: BigInt(r.tx!),
        insertTxid: BigInt(r.itx!),
        seq: BigInt(r.seq!),
        ...(r.n === 'r' ? { replaced: true as const } : {}),
        alert: {
          id: r.id!,
          userId: r.userId!,
          type: r.type!,
          title: r.title!,
          message: r.message!,
          link: r.link,
          data: r.data ?? null,
          read: r.read!,
          seen: r.seen!,
          archived: r.archived!,
          createdAt: r.createdAt!.toISOString(),
        },
      });
    } else if (r.k === 'd') {
      changes.push({ kind: 'delete', txid: BigInt(r.tx!), id: r.id!, userId: r.userId!, ...(r.n === 'o' ? { outlived: true as const } : {}) });
    } else if (r.k === 'p') {
      changes.push({ kind: 'preferences', txid: BigInt(r.tx!), userId: r.userId!, muted: r.m ?? [] });
    } else if (r.k === 'u') {
      unread.set(r.userId!, r.data as UnreadByType);
      if (r.m && r.m.length > 0) muted.set(r.userId!, r.m);
    }
  }
  return { changes, unread, muted };
}

/**
 * The last operation on a row within a transaction wins (reads with flags also mark such a
 * tombstone `outlived`, see OUTLIVED, and it is not sent; a Redis node of an older pgbell sends
 * it, so it goes first there too). An alert row here exists at the end
 * of its transaction (a delete after an insert leaves no row, only the tombstone), so a
 * tombstone of the same transaction, alert and user is an earlier delete the row outlived (a
 * delete and re-insert of one id). It goes before the alert, not after it (reads put a
 * transaction's alerts first), or the client would remove an alert that exists. It is kept, not
 * dropped: a socket whose type filter leaves out the re-inserted alert (its type changed) must
 * still drop the old one. Expects `changes` grouped by transaction; keeps that order otherwise.
 */
export function lastWins(changes: Change[]): Change[] {
  let alive: Set<string> | null = null;
  for (const c of changes) if (c.kind === 'alert') (alive ??= new Set()).add(`${c.txid}\u0000${c.alert.id}\u0000${c.alert.userId}`);
  if (alive === null) return changes;
  const live = alive;
  const outlived = (c: Change) => c.kind === 'delete' && live.has(`${c.txid}\u0000${c.id}\u0000${c.userId}`);
  if (!changes.some(outlived)) return changes;
  // Within each transaction: the outlived tombstones first, then the rest in their order.
  const out: Change[] = [];
  for (let i = 0; i < changes.length; ) {
    let j = i;
    while (j < changes.length && changes[j]!.txid === changes[i]!.txid) j++;
    const group = changes.slice(i, j);
    out.push(...group.filter(outlived), ...group.filter((c) => !outlived(c)));
    i = j;
  }
  return out;
}

/**
 * Within one transaction: a change of preferences first (it decides what the rest of the
 * transaction's alerts are to a muting tab), then rows in insertion order, then deletes.
 */
export function byRow(a: Change, b: Change): number {
  if (a.kind === 'alert' && b.kind === 'alert') return a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0;
  return RANK[a.kind] - RANK[b.kind];
}

const RANK = { preferences: 0, alert: 1, delete: 2 } as const;
