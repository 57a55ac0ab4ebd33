/**
 * Reading changes to "Alert": by transaction (live, after a NOTIFY) and by cursor (a resume,
 * a catch-up after the listener reconnects, the polling fallback). Each read is one
 * statement, so its rows, the unread counts and the snapshot horizon all come from one
 * snapshot and cost one round trip.
 */
import { sql, type Kysely } from 'kysely';
import { ReadNotTrackedError } from '../errors.js';
import type { WireAlert } from '../protocol.js';
import { preparedQuery } from './connect.js';
import type { Database } from './schema.js';

type Q = Kysely<Database>;

export interface AlertChange {
  kind: 'alert';
  /** The transaction that last inserted or updated the row. */
  txid: bigint;
  /** The transaction that inserted it: tells a new alert from a change to a known one. */
  insertTxid: bigint;
  seq: bigint;
  alert: WireAlert;
}

export interface DeleteChange {
  kind: 'delete';
  txid: bigint;
  id: string;
  userId: string;
}

export type Change = AlertChange | DeleteChange;

export interface ChangeBatch {
  /** In transaction order (the order asked for, or ascending), then row order; deletes after rows. */
  changes: Change[];
  /** Unread counts by type of every user with a change (and, for reads by cursor, every user asked about). */
  unread: Map<string, UnreadByType>;
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

interface Row {
  k: 'a' | 'd' | 'u' | 's';
  id: string | null;
  userId: string | null;
  type: string | null;
  title: string | null;
  message: string | null;
  link: string | null;
  data: unknown;
  read: boolean | null;
  createdAt: Date | null;
  itx: string | null;
  tx: string | null;
  seq: string | null;
  n: string | null;
}

/**
 * What identifies this database's transaction ids in a cursor and in Redis channel names: the
 * random id the migration wrote (pgbell_state, alias st), plus a digest of the cluster's system
 * identifier and the database's oid. A copy keeps the stored id but not both of those: a
 * CREATE DATABASE … TEMPLATE clone has another oid, a pg_dump restore into another cluster
 * another system identifier, so their cursors reset instead of being read against another
 * database's transaction ids, and two clones on one Redis do not share channels. A failover to
 * a physical replica keeps both (the same transaction history), so cursors stay valid.
 */
const DATABASE_ID = `(st."databaseId" || '-' || substr(md5((SELECT system_identifier FROM pg_control_system())::text || '/' || (SELECT oid FROM pg_database WHERE datname = current_database())::text), 1, 6))`;

/**
 * The server's timeline. A promoted standby (a failover) or a point-in-time restore starts a
 * new one, and may have lost transactions the old timeline committed: their transaction ids are
 * handed out again, to other transactions. (pg_control_checkpoint()'s timeline lags until the
 * first checkpoint after a promotion; the insert position's does not. A hot standby, where an
 * app may serve GET /alerts from, has no insert position: its last checkpoint's timeline.)
 */
const TIMELINE = `(CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END)`;

/**
 * What a cursor's transaction ids are valid in: the database (DATABASE_ID) on one timeline. A
 * cursor from another epoch is reset, never read against reused transaction ids. Redis channel
 * names use DATABASE_ID alone: they must not change under nodes that are subscribed.
 */
const EPOCH = `(${DATABASE_ID} || '-' || ${TIMELINE})`;

/** A user's unread count per alert type, as a JSON object (from the bookkeeping's partial unread index alone). */
const UNREAD_BY_TYPE = (user: string) => `(SELECT coalesce(jsonb_object_agg(c.type, c.n), '{}') FROM (
      SELECT x.type, count(*) AS n FROM "AlertChange" x WHERE x."userId" = ${user} AND NOT x.read GROUP BY x.type) c)`;

/** The rows of the CTEs every read defines: changed alerts (`ch`) and deletes (`dl`), as `Row`s. */
const CHANGE_ROWS = `SELECT 'a' AS k, id, "userId", type, title, message, link, data, read, "createdAt", itx, tx, seq, NULL::text AS n FROM ch
    UNION ALL
    SELECT 'd', id, "userId", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, tx, NULL, NULL FROM dl`;

/** Unread alerts of a user by type. */
export type UnreadByType = Record<string, number>;

/** The unread count a subscriber sees: of the types it subscribed to, or of all. */
export function unreadOf(byType: UnreadByType | undefined, types: ReadonlySet<string> | null): number {
  let n = 0;
  for (const [type, count] of Object.entries(byType ?? {})) if (types === null || types.has(type)) n += count;
  return n;
}

const changesByTxidsSql = (everyone: boolean) => `
    WITH ch AS (
      SELECT a.id, a."userId", a.type, a.title, a.message, a.link, a.data, a.read, a."createdAt",
             a.txid::text AS itx, a."changedTxid"::text AS tx, a.seq::text AS seq
        FROM "Alert" a
       WHERE a."changedTxid" = ANY($1::xid8[])${everyone ? '' : ' AND a."userId" = ANY($2::text[])'}
    ), dl AS (
      SELECT t.id, t."userId", t.txid::text AS tx
        FROM "AlertTombstone" t
       WHERE t.txid = ANY($1::xid8[])${everyone ? '' : ' AND t."userId" = ANY($2::text[])'}
    )
    ${CHANGE_ROWS}
    UNION ALL
    SELECT 'u', NULL, u."userId", NULL, NULL, NULL, NULL, ${UNREAD_BY_TYPE('u."userId"')}, NULL, NULL, NULL, NULL, NULL, NULL
      FROM (SELECT "userId" FROM ch UNION SELECT "userId" FROM dl) u
`;
const CHANGES_BY_TXIDS = changesByTxidsSql(false);
const CHANGES_BY_TXIDS_ALL = changesByTxidsSql(true);

/**
 * Changes made by the given transactions, for the given users only (a list, or a ready-made
 * Postgres array literal of one), or for everyone. `txids` is in commit order
 * (the order their notifications arrived); the result keeps it.
 */
export async function changesByTxids(db: Q, txids: readonly string[], userIds: readonly string[] | { literal: string } | 'all'): Promise<ChangeBatch> {
  if (txids.length === 0 || (Array.isArray(userIds) && userIds.length === 0)) return { changes: [], unread: new Map() };
  const rows =
    userIds === 'all'
      ? await preparedQuery<Row>(db, 'pgbell_changes_by_txids_all', CHANGES_BY_TXIDS_ALL, [[...txids]])
      : await preparedQuery<Row>(db, 'pgbell_changes_by_txids', CHANGES_BY_TXIDS, [[...txids], 'literal' in userIds ? userIds.literal : [...userIds]]);
  const order = new Map(txids.map((t, i) => [BigInt(t), i]));
  const batch = collect(rows);
  batch.changes.sort((a, b) => order.get(a.txid)! - order.get(b.txid)! || byRow(a, b));
  return { ...batch, changes: lastWins(batch.changes) };
}

const UNREAD_FOR = `
    SELECT u AS "userId", ${UNREAD_BY_TYPE('u')} AS c, NULL::boolean AS visible FROM unnest($1::text[]) u
    UNION ALL
    SELECT NULL, NULL, coalesce(bool_and(pg_visible_in_snapshot(x, pg_current_snapshot())), true) FROM unnest($2::xid8[]) x`;

/**
 * Unread counts by type of the given users (one statement, from the unread index alone), read in
 * a snapshot that sees every transaction of `visibleTxids`: the statement is run again (after a
 * millisecond) until it does. A transaction that streamed (WAL mode) can reach pgbell a moment
 * before other sessions' snapshots see it; a read before then would miss it.
 */
export async function unreadFor(db: Q, userIds: readonly string[], visibleTxids: readonly string[] = []): Promise<Map<string, UnreadByType>> {
  if (userIds.length === 0 && visibleTxids.length === 0) return new Map();
  for (let attempt = 0; ; attempt++) {
    const rows = await preparedQuery<{ userId: string | null; c: UnreadByType | null; visible: boolean | null }>(db, 'pgbell_unread_for', UNREAD_FOR, [[...userIds], [...visibleTxids]]);
    // No give-up: a transaction that streamed is committed, and reading before it is visible
    // would find nothing of it while the horizon passes it (a synchronous standby that does not
    // answer holds a commit invisible for as long as it likes). The wait backs off to 50 ms.
    if (rows.find((r) => r.visible !== null)!.visible) {
      return new Map(rows.filter((r) => r.userId !== null).map((r) => [r.userId!, r.c!]));
    }
    await new Promise((r) => setTimeout(r, Math.min(50, 1 + attempt)));
  }
}

/** Whose changes a live read returns: these users, a literal list (see Hub), or everyone's. */
export type UserFilter = readonly string[] | { literal: string } | 'all';

/**
 * The changes of live transactions, in the order given: those whose changes the source carried
 * (WAL mode's stream) as they are, with their users' unread counts (for users `wanted` says
 * have a socket here; default all); the others read by transaction id like changesByTxids.
 */
export async function liveBatch(
  db: Q,
  entries: ReadonlyArray<{ txid: string | null; carried?: Change[] | null | undefined }>,
  userIdsNow: UserFilter | (() => UserFilter),
  wanted: (userId: string) => boolean = () => true,
): Promise<ChangeBatch> {
  const order = new Map<bigint, number>();
  const toRead: string[] = [];
  const streamed: string[] = [];
  const carried: Change[] = [];
  for (const e of entries) {
    if (e.txid === null) continue;
    const tx = BigInt(e.txid);
    if (order.has(tx)) continue;
    order.set(tx, order.size);
    if (e.carried !== undefined) streamed.push(e.txid);
    if (e.carried) carried.push(...e.carried);
    else toRead.push(e.txid);
  }
  // Streamed transactions: first wait until they are visible (see unreadFor). Who is live is
  // asked after that wait, so a socket that began to sync meanwhile is served too.
  if (streamed.length > 0) await unreadFor(db, [], streamed);
  const users = new Set<string>();
  for (const c of carried) {
    const uid = c.kind === 'alert' ? c.alert.userId : c.userId;
    if (wanted(uid)) users.add(uid);
  }
  const unread = users.size > 0 ? await unreadFor(db, [...users]) : new Map<string, UnreadByType>();
  const userIds = typeof userIdsNow === 'function' ? userIdsNow() : userIdsNow;
  const read = toRead.length > 0 ? await changesByTxids(db, toRead, userIds) : { changes: [], unread: new Map<string, UnreadByType>() };
  if (carried.length === 0) return read;
  for (const [uid, byType] of unread) read.unread.set(uid, byType);
  const changes = read.changes.length === 0 ? carried : [...read.changes, ...carried];
  // Stable: each transaction's changes keep their order.
  if (read.changes.length > 0) changes.sort((a, b) => order.get(a.txid)! - order.get(b.txid)!);
  return { changes, unread: read.unread };
}

const CHANGES_SINCE = `
    WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
    req AS (
      SELECT r.uid, coalesce(r.after, pg_snapshot_xmin(snap.s)) AS after
        FROM unnest($1::text[], $2::xid8[]) AS r(uid, after), snap
    ), ch AS (
      SELECT a.* FROM req, LATERAL (
        SELECT a.id, a."userId", a.type, a.title, a.message, a.link, a.data, a.read, a."createdAt",
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
    )
    ${CHANGE_ROWS}
    UNION ALL
    SELECT 'u', NULL, req.uid, NULL, NULL, NULL, NULL, ${UNREAD_BY_TYPE('req.uid')}, NULL, NULL, NULL, NULL, NULL, NULL
      FROM req
    UNION ALL
    SELECT 's', ${EPOCH}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           pg_snapshot_xmin(snap.s)::text, pg_snapshot_xmax(snap.s)::text, st."prunedTxid"::text,
           (SELECT string_agg(x::text, ',') FROM pg_snapshot_xip(snap.s) x)
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
  // Counted on the rows as read, before lastWins drops any: a read that hit its limit is
  // truncated however many of its rows are then dropped.
  const counts = new Map<string, { a: number; d: number; lastA: bigint; lastD: bigint }>();
  for (const c of batch.changes) {
    const uid = c.kind === 'alert' ? c.alert.userId : c.userId;
    const n = counts.get(uid) ?? { a: 0, d: 0, lastA: 0n, lastD: 0n };
    if (c.kind === 'alert') (n.a++, (n.lastA = c.txid > n.lastA ? c.txid : n.lastA));
    else (n.d++, (n.lastD = c.txid > n.lastD ? c.txid : n.lastD));
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
      SELECT a.id, a."userId", a.type, a.title, a.message, a.link, a.data, a.read, a."createdAt",
             a.txid::text AS itx, a."changedTxid"::text AS tx, a.seq::text AS seq
        FROM "Alert" a WHERE a."changedTxid" >= $1::xid8
       ORDER BY a."changedTxid", a.seq LIMIT $2
    ), dl AS (
      SELECT t.id, t."userId", t.txid::text AS tx FROM "AlertTombstone" t WHERE t.txid >= $1::xid8
    )
    ${CHANGE_ROWS}
    UNION ALL
    SELECT 'u', NULL, u."userId", NULL, NULL, NULL, NULL, ${UNREAD_BY_TYPE('u."userId"')}, NULL, NULL, NULL, NULL, NULL, NULL
      FROM (SELECT "userId" FROM ch UNION SELECT "userId" FROM dl) u
    UNION ALL
    SELECT 's', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, pg_snapshot_xmin(snap.s)::text, NULL, NULL, NULL FROM snap
`;

/** One page of a user's alerts, newest first, and whether older ones follow. */
export interface AlertPage {
  alerts: WireAlert[];
  more: boolean;
}

/**
 * A page of a user's alerts (the bell's list), newest first, optionally only of some types:
 * the newest `limit`, or with `before` the `limit` next older than that alert of the user's.
 * Null when `before` is no alert of this user's (or not even a valid key of the table).
 *
 * The order is the list's key, ("createdAt" DESC, id DESC), read through its index
 * ("AlertChange_userId_createdAt_idx"); a page continues strictly below the key of its
 * `before` alert, compared in SQL (JavaScript's Date would drop the microseconds), so alerts
 * inserted meanwhile never shift a page: nothing appears on two pages or falls between them.
 */
export async function alertPage(db: Q, userId: string, limit: number, types: ReadonlySet<string> | null, before: string | null): Promise<AlertPage | null> {
  const ofTypes = types === null ? sql`` : sql`AND x.type = ANY(${[...types]}::text[])`;
  // One row more than the page says whether another page follows.
  if (before === null) {
    const { rows } = await sql<PageRow>`
      SELECT ${PAGE_COLUMNS} FROM "Alert" x WHERE x."userId" = ${userId} ${ofTypes}
       ORDER BY x."createdAt" DESC, x.id DESC LIMIT ${limit + 1}`.execute(db);
    return pageOf(rows, limit);
  }
  // One statement, so the lookup of `before` and the page below it see one snapshot: no row
  // when `before` is not the user's, one with nulls when nothing is older. The table's key has
  // the table's own type (uuid, bigint, text…): the parameter is sent untyped, so Postgres reads
  // it as that type and finds the row by primary key.
  try {
    const { rows } = await sql<PageRow>`
      WITH b AS MATERIALIZED (SELECT "createdAt", id FROM "Alert" WHERE key = ${before} AND id = ${before} AND "userId" = ${userId})
      SELECT x.* FROM b LEFT JOIN LATERAL (
        SELECT ${PAGE_COLUMNS} FROM "Alert" x
         WHERE x."userId" = ${userId} AND (x."createdAt", x.id) < (b."createdAt", b.id) ${ofTypes}
         ORDER BY x."createdAt" DESC, x.id DESC LIMIT ${limit + 1}) x ON true`.execute(db);
    if (rows.length === 0) return null;
    return pageOf(rows.filter((r) => r.id !== null), limit);
  } catch (err) {
    // An id that is not even of the key's type (invalid input, out of range: class 22) is no
    // alert of the user's, not a failure of the database.
    if (/^22/.test((err as { code?: string }).code ?? '')) return null;
    throw err;
  }
}

const PAGE_COLUMNS = sql.raw(`x.id, x."userId", x.type, x.title, x.message, x.link, x.data, x.read, x."createdAt"`);

type PageRow = Omit<WireAlert, 'createdAt'> & { createdAt: Date };

function pageOf(rows: PageRow[], limit: number): AlertPage {
  return { alerts: rows.slice(0, limit).map((r) => ({ ...r, createdAt: r.createdAt.toISOString() })), more: rows.length > limit };
}

/** A user's unread alerts by type. */
export async function unreadCounts(db: Q, userId: string): Promise<UnreadByType> {
  const rows = await preparedQuery<{ c: UnreadByType }>(db, 'pgbell_unread', `SELECT ${UNREAD_BY_TYPE('$1::text')} AS c`, [userId]);
  return rows[0]?.c ?? {};
}

/** The database's id (see DATABASE_ID): Redis channel names. */
export async function databaseId(db: Q): Promise<string> {
  const { rows } = await sql<{ id: string }>`SELECT ${sql.raw(DATABASE_ID)} AS id FROM pgbell_state st`.execute(db);
  if (!rows[0]) throw new Error('pgbell_state is empty: run `pgbell migrate`');
  return rows[0].id;
}

/** The epoch cursors are issued in now (see EPOCH). */
export async function currentEpoch(db: Q): Promise<string> {
  const { rows } = await sql<{ id: string }>`SELECT ${sql.raw(EPOCH)} AS id FROM pgbell_state st`.execute(db);
  if (!rows[0]) throw new Error('pgbell_state is empty: run `pgbell migrate`');
  return rows[0].id;
}

/** The server's timeline alone (see TIMELINE): what the poller watches. */
export const TIMELINE_SQL = TIMELINE;

/**
 * Marks alerts read (only the user's own): an UPDATE of the table like any other, so the
 * trigger streams it to every tab of the user. Returns how many rows changed.
 */
export async function markRead(db: Q, userId: string, which: { ids: readonly string[] } | { all: true }): Promise<number> {
  if ('ids' in which && which.ids.length === 0) return 0;
  try {
    const { rows } = await sql<{ n: string }>`SELECT mark_read(${userId}, ${'ids' in which ? [...which.ids] : null}::text[])::text AS n`.execute(db);
    return Number(rows[0]!.n);
  } catch (err) {
    // An installed table without a read column (see src/db/bookkeeping.ts).
    if ((err as { code?: string }).code === '0A000' && /read state is not tracked/.test((err as Error).message)) throw new ReadNotTrackedError();
    throw err;
  }
}

/** Deletes tombstones older than `hours` and records how far that went, for cursor checks. */
export async function pruneTombstones(db: Q, hours: number): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    WITH gone AS (
      DELETE FROM "AlertTombstone" WHERE "deletedAt" < now() - make_interval(hours => ${hours}) RETURNING txid
    ), moved AS (
      UPDATE pgbell_state SET "prunedTxid" = greatest("prunedTxid", (SELECT max(txid) FROM gone))
       WHERE EXISTS (SELECT 1 FROM gone)
    )
    SELECT count(*)::text AS n FROM gone
  `.execute(db);
  return Number(rows[0]?.n ?? 0);
}

function collect(rows: Row[]): ChangeBatch {
  const changes: Change[] = [];
  const unread = new Map<string, UnreadByType>();
  for (const r of rows) {
    if (r.k === 'a') {
      changes.push({
        kind: 'alert',
        txid: BigInt(r.tx!),
        insertTxid: BigInt(r.itx!),
        seq: BigInt(r.seq!),
        alert: {
          id: r.id!,
          userId: r.userId!,
          type: r.type!,
          title: r.title!,
          message: r.message!,
          link: r.link,
          data: r.data ?? null,
          read: r.read!,
          createdAt: r.createdAt!.toISOString(),
        },
      });
    } else if (r.k === 'd') {
      changes.push({ kind: 'delete', txid: BigInt(r.tx!), id: r.id!, userId: r.userId! });
    } else if (r.k === 'u') {
      unread.set(r.userId!, r.data as UnreadByType);
    }
  }
  return { changes, unread };
}

/** Within one transaction: rows in insertion order, then deletes. */
/**
 * The last operation on a row within a transaction wins. An alert row here exists at the end
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

function byRow(a: Change, b: Change): number {
  if (a.kind === 'alert' && b.kind === 'alert') return a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0;
  return a.kind === b.kind ? 0 : a.kind === 'alert' ? -1 : 1;
}

/** Whether a read saw transaction `tx` (it had committed, or aborted, before the read's snapshot). */
export function sawTx(read: Pick<SinceBatch, 'xmin' | 'xmax' | 'xip'>, tx: bigint): boolean {
  return tx < read.xmin || (tx < read.xmax && !read.xip.has(tx));
}

/** The delivery reads' SQL, for tests that check their plans use indexes. */
export const DELIVERY_READS = { byTxids: CHANGES_BY_TXIDS, byTxidsAll: CHANGES_BY_TXIDS_ALL, since: CHANGES_SINCE, sinceAll: CHANGES_SINCE_ALL } as const;
