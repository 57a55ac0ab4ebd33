/**
 * A user's alerts as the bell shows them, apart from the stream of changes: a page of the
 * list, the unread counts, marking read. The /alerts routes and the sockets' messages (wired by
 * the daemon) call these; each is one statement on the "Alert" view or its bookkeeping.
 */
import { sql, type Kysely } from 'kysely';
import { ReadNotTrackedError } from '../errors.js';
import type { WireAlert } from '../protocol.js';
import { UNREAD_BY_TYPE } from './change-rows.js';
import type { UnreadByType } from './change-types.js';
import { preparedQuery } from './connect.js';
import type { Database } from './schema.js';

type Q = Kysely<Database>;

/** One page of a user's alerts, newest first, and whether older ones follow. */
export interface AlertPage {
  alerts: WireAlert[];
  more: boolean;
}

/**
 * A page of a user's alerts (the bell's list), newest first, optionally only of some types:
 * the newest `limit`, or with `before` the `limit` next older than that alert of the user's;
 * the list of alerts not archived, or with `archived` the archived ones; without `types`, no
 * alert of a type the user muted.
 * Null when `before` is no alert of this user's (or not even a valid key of the table).
 *
 * The order is the list's key, ("createdAt" DESC, id DESC), read through its index
 * ("AlertChange_userId_createdAt_idx"); a page continues strictly below the key of its
 * `before` alert, compared in SQL (JavaScript's Date would drop the microseconds), so alerts
 * inserted meanwhile never shift a page: nothing appears on two pages or falls between them.
 */
export async function alertPage(db: Q, userId: string, limit: number, types: ReadonlySet<string> | null, before: string | null, archived = false): Promise<AlertPage | null> {
  // Muted types are left out unless asked for by name.
  const ofTypes = sql`AND x.archived = ${archived} ${
    types === null ? sql`AND x.type <> ALL(coalesce((SELECT p.muted FROM preference p WHERE p."userId" = ${userId}), '{}'))` : sql`AND x.type = ANY(${[...types]}::text[])`
  }`;
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

const PAGE_COLUMNS = sql.raw(`x.id, x."userId", x.type, x.title, x.message, x.link, x.data, x.read, x.seen, x.archived, x."createdAt"`);

type PageRow = Omit<WireAlert, 'createdAt'> & { createdAt: Date };

function pageOf(rows: PageRow[], limit: number): AlertPage {
  return { alerts: rows.slice(0, limit).map((r) => ({ ...r, createdAt: r.createdAt.toISOString() })), more: rows.length > limit };
}

/** A user's unread alerts by type. */
export async function unreadCounts(db: Q, userId: string): Promise<UnreadByType> {
  const rows = await preparedQuery<{ c: UnreadByType }>(db, 'pgbell_unread', `SELECT ${UNREAD_BY_TYPE('$1::text')} AS c`, [userId]);
  return rows[0]?.c ?? {};
}

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

/** A user's muted types, sorted (none: empty). */
export async function mutedTypes(db: Q, userId: string): Promise<string[]> {
  const { rows } = await sql<{ muted: string[] }>`SELECT coalesce((SELECT muted FROM preference WHERE "userId" = ${userId}), '{}') AS muted`.execute(db);
  return rows[0]!.muted;
}

/**
 * Sets a user's muted types (the whole set) through pgbell.set_muted, so the change streams to
 * every tab of the user. Returns the set as stored.
 */
export async function setMutedTypes(db: Q, userId: string, muted: readonly string[]): Promise<string[]> {
  const { rows } = await sql<{ muted: string[] }>`
    WITH s AS (SELECT set_muted(${userId}, ${[...muted]}::text[]))
    SELECT ARRAY(SELECT DISTINCT t FROM unnest(${[...muted]}::text[]) t ORDER BY t) AS muted FROM s`.execute(db);
  return rows[0]!.muted;
}
