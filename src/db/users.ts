/** Queries on "User". Each takes a Kysely instance or a transaction. (Alerts: changes.ts.) */
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';

type Q = Kysely<Database>;

export async function findUserByEmail(db: Q, email: string): Promise<{ id: string; email: string } | undefined> {
  return db.selectFrom('User').select(['id', 'email']).where('email', '=', email).executeTakeFirst();
}

/** Creates the user or, if one has that email already, returns it. */
export async function ensureUser(db: Q, user: { id: string; email: string; name?: string | null }): Promise<{ id: string; email: string }> {
  await db
    .insertInto('User')
    .values({ id: user.id, email: user.email, name: user.name ?? null })
    .onConflict((oc) => oc.doNothing())
    .execute();
  const found = await findUserByEmail(db, user.email);
  if (!found) throw new Error(`user id ${user.id} exists with another email than ${user.email}`);
  return found;
}

/**
 * For each user, the latest revocation (seconds since the epoch): tokens issued before it are
 * refused. Users without one are absent.
 */
export async function revokedBefore(db: Q, userIds: readonly string[]): Promise<Map<string, number>> {
  if (userIds.length === 0) return new Map();
  const { rows } = await sql<{ userId: string; before: string }>`
    SELECT "userId", floor(extract(epoch FROM max(before)))::bigint::text AS before
      FROM pgbell_revocation WHERE "userId" = ANY(${[...userIds]}::text[]) GROUP BY "userId"`.execute(db);
  return new Map(rows.map((r) => [r.userId, Number(r.before)]));
}

/** Every user's latest revocation (seconds since the epoch): see src/sources/revocations.ts. */
export async function allRevocations(db: Q): Promise<Map<string, number>> {
  const { rows } = await sql<{ userId: string; before: string }>`
    SELECT "userId", floor(extract(epoch FROM max(before)))::bigint::text AS before FROM pgbell_revocation GROUP BY "userId"`.execute(db);
  return new Map(rows.map((r) => [r.userId, Number(r.before)]));
}
