/**
 * Seen and archived, as the daemon's routes change them: through the SQL functions of
 * state-sql.ts (so a change by HTTP and one by a cron job's SQL are the same change). The first
 * statement checks that every id named is one of the user's alerts: an id that is not (another
 * user's, deleted, never existed) changes nothing at all, and the whole request is refused.
 *
 * The functions never wait for a row a writer holds (see stateFunction): a change of many alerts
 * goes in batches of STATE_BATCH, each its own short transaction, and rows skipped because a
 * writer held them are tried again until none is left or STATE_ATTEMPTS have passed; what is
 * still left then is reported as `pending`, never hidden.
 */
import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { Database } from './schema.js';

type Q = Kysely<Database>;

/** Alerts changed per statement: a writer waits at most for one batch's row locks. */
export const STATE_BATCH = 500;
/** Passes over rows a writer held, 20 ms apart, before the rest is reported as pending. */
export const STATE_ATTEMPTS = 50;

export type StateChange =
  | { op: 'seen'; ids: readonly string[] | null }
  | { op: 'archive'; ids: readonly string[] | null; onlyRead: boolean }
  | { op: 'unarchive'; ids: readonly string[] };

/**
 * How many alerts changed state and how many matching ones were left (held by writers
 * throughout), or null when an id named is not one of the user's alerts (nothing changed).
 */
export async function changeState(db: Q, userId: string, change: StateChange): Promise<{ updated: number; pending: number } | null> {
  const ids = change.ids === null ? null : [...new Set(change.ids)];
  const call = (limit: number): RawBuilder<unknown> =>
    change.op === 'seen'
      ? sql`mark_seen(${userId}, ${ids}::text[], ${limit})`
      : change.op === 'archive'
        ? sql`archive(${userId}, ${ids}::text[], ${change.onlyRead}, ${limit})`
        : sql`unarchive(${userId}, ${ids}::text[], ${limit})`;
  // CASE runs the function only when every id is the user's: one statement, one snapshot.
  const first = await sql<{ n: string | null }>`
    SELECT CASE WHEN ${ids}::text[] IS NULL
                  OR (SELECT count(*) FROM "AlertChange" c WHERE c."userId" = ${userId} AND c.id = ANY(${ids}::text[])) = cardinality(${ids}::text[])
           THEN ${call(STATE_BATCH)} END::text AS n`.execute(db);
  if (first.rows[0]!.n === null) return null;
  let updated = Number(first.rows[0]!.n);
  let last = updated;
  for (let attempt = 0; ; ) {
    if (last === STATE_BATCH) {
      last = Number((await sql<{ n: string }>`SELECT ${call(STATE_BATCH)}::text AS n`.execute(db)).rows[0]!.n);
      updated += last;
      continue;
    }
    const pending = await left(db, userId, change, ids);
    if (pending === 0 || ++attempt >= STATE_ATTEMPTS) return { updated, pending };
    await new Promise((r) => setTimeout(r, 20));
    last = STATE_BATCH;
  }
}

/** The user's alerts the change still applies to (the functions' own conditions, in state-sql.ts). */
async function left(db: Q, userId: string, change: StateChange, ids: string[] | null): Promise<number> {
  const where =
    change.op === 'seen'
      ? sql`NOT seen AND NOT read AND (CASE WHEN ${ids}::text[] IS NULL THEN NOT archived ELSE id = ANY(${ids}::text[]) END)`
      : change.op === 'archive'
        ? sql`NOT archived AND (${ids}::text[] IS NULL OR id = ANY(${ids}::text[])) AND (read OR NOT ${change.onlyRead})`
        : sql`archived AND id = ANY(${ids}::text[])`;
  const { rows } = await sql<{ n: string }>`SELECT count(*)::text AS n FROM "AlertChange" WHERE "userId" = ${userId} AND ${where}`.execute(db);
  return Number(rows[0]!.n);
}
