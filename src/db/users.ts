/** Queries on "User". Each takes a Kysely instance or a transaction. (Alerts: changes.ts.) */
import type { Kysely } from 'kysely';
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
