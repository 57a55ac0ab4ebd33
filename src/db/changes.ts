/**
 * Reading changes to "Alert": by transaction (live, after a NOTIFY) and by cursor (a resume,
 * a catch-up after the listener reconnects, the polling fallback). Each read is one
 * statement, so its rows, the unread counts and the snapshot horizon all come from one
 * snapshot and cost one round trip.
 *
 * The pieces the reads share live beside this file: change-types.ts (what a read gives),
 * change-rows.ts (the rows' shape, their decoding and order) and epoch.ts (EPOCH, DATABASE_ID
 * and TIMELINE: what a cursor is valid in). The bell's list, unread counts and marking read are
 * in alerts.ts, pruning in tombstones.ts; all are re-exported here for the files that import
 * them from here.
 */
import type { Kysely } from 'kysely';
import { byRow, changeRows, collect, lastWins, MUTED, UNREAD_BY_TYPE, USER_ROW, type Row } from './change-rows.js';
import type { Change, ChangeBatch, Counted, SinceBatch, UnreadByType, UserFilter } from './change-types.js';
import { preparedQuery } from './connect.js';
import { EPOCH } from './epoch.js';
import type { Database } from './schema.js';

export { alertPage, markRead, unreadCounts, type AlertPage } from './alerts.js';
export { lastWins } from './change-rows.js';
export { countsJson, countsOf, NO_COUNTS, sawTx, sendable, type AlertChange, type Counts, type TypeCounts, type Change, type ChangeBatch, type Counted, type DeleteChange, type SinceBatch, type UnreadByType, type UserFilter } from './change-types.js';
export { currentEpoch, databaseId, TIMELINE_SQL } from './epoch.js';
export { pruneTombstones } from './tombstones.js';

type Q = Kysely<Database>;

const changesByTxidsSql = (everyone: boolean, streamed: boolean) => `
    WITH ch AS (
      SELECT a.id, a."userId", a.type, a.title, a.message, a.link, a.data, a.read, a.seen, a.archived, a."createdAt",
             a.txid::text AS itx, a."changedTxid"::text AS tx, a.seq::text AS seq
        FROM "Alert" a
       WHERE a."changedTxid" = ANY($1::xid8[])${everyone ? '' : ' AND a."userId" = ANY($2::text[])'}
    ), dl AS (
      SELECT t.id, t."userId", t.txid::text AS tx
        FROM "AlertTombstone" t
       WHERE t.txid = ANY($1::xid8[])${everyone ? '' : ' AND t."userId" = ANY($2::text[])'}
    ), pf AS (
      SELECT p."userId", p.muted, p."changedTxid"::text AS tx
        FROM preference p
       WHERE p."changedTxid" = ANY($1::xid8[])${everyone ? '' : ' AND p."userId" = ANY($2::text[])'}
    )
    ${changeRows(!streamed)}
    UNION ALL
    SELECT ${USER_ROW('u."userId"')}
      FROM (SELECT "userId" FROM ch UNION SELECT "userId" FROM dl UNION SELECT "userId" FROM pf) u
`;
const CHANGES_BY_TXIDS = { users: changesByTxidsSql(false, false), all: changesByTxidsSql(true, false), usersStreamed: changesByTxidsSql(false, true), allStreamed: changesByTxidsSql(true, true) } as const;

/**
 * Changes made by the given transactions, for the given users only (a list, or a ready-made
 * Postgres array literal of one), or for everyone, in the order of `txids` (the result keeps
 * it). `streamed`: the transactions came from a stream, in commit order, beside others it
 * carried (see changeRows); otherwise (notifications, which arrive in commit order, or a poll,
 * in id order) the order does not matter.
 */
export async function changesByTxids(db: Q, txids: readonly string[], userIds: readonly string[] | { literal: string } | 'all', streamed = false): Promise<ChangeBatch> {
  if (txids.length === 0 || (Array.isArray(userIds) && userIds.length === 0)) return { changes: [], unread: new Map() };
  const s = streamed ? '_streamed' : '';
  const rows =
    userIds === 'all'
      ? await preparedQuery<Row>(db, `pgbell_changes_by_txids_all${s}`, streamed ? CHANGES_BY_TXIDS.allStreamed : CHANGES_BY_TXIDS.all, [[...txids]])
      : await preparedQuery<Row>(db, `pgbell_changes_by_txids${s}`, streamed ? CHANGES_BY_TXIDS.usersStreamed : CHANGES_BY_TXIDS.users, [[...txids], 'literal' in userIds ? userIds.literal : [...userIds]]);
  const order = new Map(txids.map((t, i) => [BigInt(t), i]));
  const batch = collect(rows);
  batch.changes.sort((a, b) => order.get(a.txid)! - order.get(b.txid)! || byRow(a, b));
  // Within a transaction the row wins (a delete of it, outlived or a stream's, goes first: a Redis
  // node of an older pgbell sends an outlived delete too).
  return { ...batch, changes: lastWins(batch.changes) };
}

const UNREAD_FOR = `
    SELECT u AS "userId", ${UNREAD_BY_TYPE('u')} AS c, ${MUTED('u')} AS m, NULL::boolean AS visible FROM unnest($1::text[]) u
    UNION ALL
    SELECT NULL, NULL, NULL, coalesce(bool_and(pg_visible_in_snapshot(x, pg_current_snapshot())), true) FROM unnest($2::xid8[]) x`;

/**
 * Counts by type of the given users (one statement, from the counts index alone), read in
 * a snapshot that sees every transaction of `visibleTxids`: the statement is run again (after a
 * millisecond) until it does. A transaction that streamed (WAL mode) can reach pgbell a moment
 * before other sessions' snapshots see it; a read before then would miss it.
 */
export async function unreadFor(db: Q, userIds: readonly string[], visibleTxids: readonly string[] = []): Promise<{ unread: Map<string, UnreadByType>; muted: Map<string, string[]> }> {
  if (userIds.length === 0 && visibleTxids.length === 0) return { unread: new Map(), muted: new Map() };
  for (let attempt = 0; ; attempt++) {
    const rows = await preparedQuery<{ userId: string | null; c: UnreadByType | null; m: string[] | null; visible: boolean | null }>(db, 'pgbell_unread_for', UNREAD_FOR, [[...userIds], [...visibleTxids]]);
    // No give-up: a transaction that streamed is committed, and reading before it is visible
    // would find nothing of it while the horizon passes it (a synchronous standby that does not
    // answer holds a commit invisible for as long as it likes). The wait backs off to 50 ms.
    if (rows.find((r) => r.visible !== null)!.visible) {
      const users = rows.filter((r) => r.userId !== null);
      return { unread: new Map(users.map((r) => [r.userId!, r.c!])), muted: new Map(users.filter((r) => r.m!.length > 0).map((r) => [r.userId!, r.m!])) };
    }
    await new Promise((r) => setTimeout(r, Math.min(50, 1 + attempt)));
  }
}

/**
 * The changes of live transactions, in the order given: those whose changes the source carried
 * (WAL mode's stream) as they are, with their users' unread counts (for users `wanted` says
 * have a socket here; default all); those handed over with their counts already (`counted`: a
 * worker's forwarded source) as they are, with those counts and no read at all; the others read
 * by transaction id like changesByTxids.
 */
export async function liveBatch(
  db: Q,
  entries: ReadonlyArray<{ txid: string | null; carried?: Change[] | null | undefined; counted?: Counted | undefined }>,
  userIdsNow: UserFilter | (() => UserFilter),
  wanted: (userId: string) => boolean = () => true,
): Promise<ChangeBatch> {
  const order = new Map<bigint, number>();
  const toRead: string[] = [];
  const streamed: string[] = [];
  const carried: Change[] = [];
  /** Users whose carried changes came without counts: counted here (those with a socket here). */
  const users = new Set<string>();
  const given: { unread: Map<string, UnreadByType>; muted: Map<string, string[]> } = { unread: new Map(), muted: new Map() };
  for (const e of entries) {
    if (e.txid === null) continue;
    const tx = BigInt(e.txid);
    if (order.has(tx)) continue;
    order.set(tx, order.size);
    if (e.counted && e.carried) {
      // Read already, for everyone, with its counts (later entries' counts are newer).
      carried.push(...e.carried);
      for (const [uid, c] of e.counted.unread) {
        given.unread.set(uid, c);
        // Absent from muted: none (a later batch's unmute replaces an earlier mute).
        given.muted.delete(uid);
      }
      for (const [uid, m] of e.counted.muted) given.muted.set(uid, [...m]);
      continue;
    }
    if (e.carried !== undefined) streamed.push(e.txid);
    if (e.carried) {
      carried.push(...e.carried);
      for (const c of e.carried) users.add(c.kind === 'alert' ? c.alert.userId : c.userId);
    } else toRead.push(e.txid);
  }
  // Streamed transactions: their users' counts are read in a snapshot that sees them (see
  // unreadFor), in one statement with the wait for that snapshot. Who has a socket here is asked
  // before the wait and again after it: a socket that began to sync meanwhile is counted too,
  // by a second statement (rare: it joined within the wait).
  const counted = { unread: new Map<string, UnreadByType>(), muted: new Map<string, string[]>() };
  const count = async (uids: string[], visible: string[]) => {
    if (uids.length === 0 && visible.length === 0) return;
    const got = await unreadFor(db, uids, visible);
    for (const [uid, c] of got.unread) counted.unread.set(uid, c);
    for (const [uid, m] of got.muted) counted.muted.set(uid, m);
  };
  await count([...users].filter(wanted), streamed);
  await count([...users].filter((uid) => !counted.unread.has(uid) && wanted(uid)), []);
  // Asked only for a read: a step of forwarded or streamed transactions needs no list of users.
  const read: ChangeBatch =
    toRead.length > 0
      ? await changesByTxids(db, toRead, typeof userIdsNow === 'function' ? userIdsNow() : userIdsNow, streamed.length > 0)
      : { changes: [], unread: new Map<string, UnreadByType>(), muted: new Map() };
  if (carried.length === 0) return read;
  for (const [uid, byType] of given.unread) read.unread.set(uid, byType);
  for (const [uid, byType] of counted.unread) read.unread.set(uid, byType);
  const muted = read.muted ?? new Map<string, string[]>();
  for (const [uid, m] of given.muted) muted.set(uid, m);
  for (const [uid, m] of counted.muted) muted.set(uid, m);
  const changes = read.changes.length === 0 ? carried : [...read.changes, ...carried];
  // Stable: each transaction's changes keep their order.
  if (read.changes.length > 0) changes.sort((a, b) => order.get(a.txid)! - order.get(b.txid)!);
  return { changes, unread: read.unread, muted };
}

const CHANGES_SINCE = `
    WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
    req AS (
      SELECT r.uid, coalesce(r.after, pg_snapshot_xmin(snap.s)) AS after
        FROM unnest($1::text[], $2::xid8[]) AS r(uid, after), snap
    ), ch AS (
      SELECT a.* FROM req, LATERAL (
        SELECT a.id, a."userId", a.type, a.title, a.message, a.link, a.data, a.read, a.seen, a.archived, a."createdAt",
               a.txid::text AS itx, a."changedTxid"::text AS tx, a.seq::text AS seq
          FROM "Alert" a
         WHERE a."userId" = req.uid AND a."changedTxid" >= req.after
         ORDER BY a."changedTxid", a.seq
         LIMIT $3) a
    ), dl AS (
      SELECT t.* FROM req, LATERAL (
        SELECT t.id, t."userId", t.txid::text AS tx
          FROM "AlertTombstone" t
         WHERE t."userId" = req.uid AND t.txid >= req.after
         ORDER BY t.txid
         LIMIT $3) t
    ), pf AS (
      -- One row per user at most: its preferences now, if they changed since.
      SELECT p."userId", p.muted, p."changedTxid"::text AS tx
        FROM req JOIN preference p ON p."userId" = req.uid AND p."changedTxid" >= req.after
    )
    ${changeRows(true)}
    UNION ALL
    SELECT ${USER_ROW('req.uid')}
      FROM req
    UNION ALL
    SELECT 's', ${EPOCH}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           pg_snapshot_xmin(snap.s)::text, pg_snapshot_xmax(snap.s)::text, st."prunedTxid"::text,
           (SELECT string_agg(x::text, ',') FROM pg_snapshot_xip(snap.s) x), NULL
      FROM snap, pgbell_state st
`;

/**
 * Every change for each user at or after `after` (null: after this read's own horizon, which
 * is what a fresh cursor needs to know), oldest transaction first, at most `limit` rows and
 * `limit` deletes per user.
 */
export async function changesSince(db: Q, requests: ReadonlyArray<{ userId: string; after: bigint | null }>, limit: number): Promise<SinceBatch> {
  const users = requests.map((r) => r.userId);
  const afters = requests.map((r) => (r.after === null ? null : r.after.toString()));
  const rows = await preparedQuery<Row>(db, 'pgbell_changes_since', CHANGES_SINCE, [users, afters, limit + 1]);
  const batch = collect(rows);
  const s = rows.find((r) => r.k === 's');
  if (!s) throw new Error('pgbell_state is empty: run `pgbell migrate`');
  const counts = new Map<string, { a: number; d: number; lastA: bigint; lastD: bigint }>();
  for (const c of batch.changes) {
    const uid = c.kind === 'alert' ? c.alert.userId : c.userId;
    const n = counts.get(uid) ?? { a: 0, d: 0, lastA: 0n, lastD: 0n };
    // Only alerts and deletes are read up to a limit (a user has one preferences row at most).
    if (c.kind === 'alert') (n.a++, (n.lastA = c.txid > n.lastA ? c.txid : n.lastA));
    else if (c.kind === 'delete') (n.d++, (n.lastD = c.txid > n.lastD ? c.txid : n.lastD));
    counts.set(uid, n);
  }
  const truncated = new Set<string>();
  const cuts = new Map<string, bigint>();
  for (const [uid, n] of counts) {
    if (n.a <= limit && n.d <= limit) continue;
    truncated.add(uid);
    // Each kind is read in transaction order up to its limit: below the last transaction it
    // reached, everything of that kind was read.
    const a = n.a > limit ? n.lastA : null;
    const d = n.d > limit ? n.lastD : null;
    cuts.set(uid, a === null ? d! : d === null ? a : a < d ? a : d);
  }
  batch.changes.sort((a, b) => (a.txid < b.txid ? -1 : a.txid > b.txid ? 1 : byRow(a, b)));
  const xip = new Set(s.n ? s.n.split(',').map((x) => BigInt(x)) : []);
  return { ...batch, changes: lastWins(batch.changes), xmin: BigInt(s.itx!), xmax: BigInt(s.tx!), xip, prunedTxid: BigInt(s.seq!), epoch: s.id!, truncated, cuts };
}

/**
 * Every user's changes at or after `after`, oldest transaction first, with the read's snapshot
 * horizon: what a relay that took over publishes first. At most `limit` rows.
 */
export async function changesSinceAll(db: Q, after: bigint, limit: number): Promise<{ batch: ChangeBatch; xmin: bigint; next: bigint | null }> {
  const rows = await preparedQuery<Row>(db, 'pgbell_changes_since_all', CHANGES_SINCE_ALL, [after.toString(), limit]);
  const s = rows.find((r) => r.k === 's')!;
  const batch = collect(rows);
  batch.changes.sort((a, b) => (a.txid < b.txid ? -1 : a.txid > b.txid ? 1 : byRow(a, b)));
  // A full page may stop inside the transaction of its last alert row, and the tombstones (not
  // limited) may reach beyond it: the page keeps only what is below that transaction, whole,
  // and the next page starts at it (`next`). Null: this page is everything.
  const alerts = batch.changes.filter((c) => c.kind === 'alert');
  if (alerts.length < limit) return { batch: { ...batch, changes: lastWins(batch.changes) }, xmin: BigInt(s.itx!), next: null };
  const cut = alerts.at(-1)!.txid;
  return { batch: { changes: lastWins(batch.changes.filter((c) => c.txid < cut)), unread: batch.unread }, xmin: BigInt(s.itx!), next: cut };
}

const CHANGES_SINCE_ALL = `
    WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
    ch AS (
      SELECT a.id, a."userId", a.type, a.title, a.message, a.link, a.data, a.read, a.seen, a.archived, a."createdAt",
             a.txid::text AS itx, a."changedTxid"::text AS tx, a.seq::text AS seq
        FROM "Alert" a WHERE a."changedTxid" >= $1::xid8
       ORDER BY a."changedTxid", a.seq LIMIT $2
    ), dl AS (
      SELECT t.id, t."userId", t.txid::text AS tx FROM "AlertTombstone" t WHERE t.txid >= $1::xid8
    ), pf AS (
      SELECT p."userId", p.muted, p."changedTxid"::text AS tx FROM preference p WHERE p."changedTxid" >= $1::xid8
    )
    ${changeRows(true)}
    UNION ALL
    SELECT ${USER_ROW('u."userId"')}
      FROM (SELECT "userId" FROM ch UNION SELECT "userId" FROM dl UNION SELECT "userId" FROM pf) u
    UNION ALL
    SELECT 's', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, pg_snapshot_xmin(snap.s)::text, NULL, NULL, NULL, NULL FROM snap
`;

/** The delivery reads' SQL, for tests that check their plans use indexes. */
export const DELIVERY_READS = { byTxids: CHANGES_BY_TXIDS.users, byTxidsAll: CHANGES_BY_TXIDS.all, since: CHANGES_SINCE, sinceAll: CHANGES_SINCE_ALL } as const;
