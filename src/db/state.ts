/**
 * Seen and archived, as the daemon's routes change them: through the SQL functions of
 * state-sql.ts (so a change by HTTP and one by a cron job's SQL are the same change), each in
 * one statement that first checks every id named is one of the user's alerts. An id that is
 * not (another user's, deleted, never existed) changes nothing at all: the whole request is
 * refused, and what the response says is what happened.
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';

type Q = Kysely<Database>;

export type StateChange =
  | { op: 'seen'; ids: readonly string[] | null }
  | { op: 'archive'; ids: readonly string[] | null; onlyRead: boolean }
  | { op: 'unarchive'; ids: readonly string[] };

/** How many alerts changed state, or null when an id named is not one of the user's alerts (nothing changed). */
export async function changeState(db: Q, userId: string, change: StateChange): Promise<number | null> {
  const ids = change.ids === null ? null : [...new Set(change.ids)];
  const call =
    change.op === 'seen'
      ? sql`mark_seen(${userId}, ${ids}::text[])`
      : change.op === 'archive'
        ? sql`archive(${userId}, ${ids}::text[], ${change.onlyRead})`
        : sql`unarchive(${userId}, ${ids}::text[])`;
  // CASE runs the function only when every id is the user's: one statement, one snapshot.
  const { rows } = await sql<{ n: string | null }>`
    SELECT CASE WHEN ${ids}::text[] IS NULL
                  OR (SELECT count(*) FROM "AlertChange" c WHERE c."userId" = ${userId} AND c.id = ANY(${ids}::text[])) = cardinality(${ids}::text[])
           THEN ${call} END::text AS n`.execute(db);
  const n = rows[0]!.n;
  return n === null ? null : Number(n);
}
