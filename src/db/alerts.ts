/** Queries on "Alert" and "User". Each takes a Kysely instance or a transaction. */
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';
import type { WireAlert } from '../protocol.js';

type Q = Kysely<Database>;

const wireColumns = ['id', 'userId', 'type', 'title', 'message', 'link', 'data', 'read', 'createdAt'] as const;

/**
 * Alerts written by the given transactions (as committed now), in the order of `txids`. NOTIFY only says
 * "transaction X wrote alerts"; this is where the rows themselves are read.
 * `userIds` limits the read to users someone is listening for.
 */
export async function alertsByTxids(db: Q, txids: readonly string[], userIds?: readonly string[]): Promise<WireAlert[]> {
  if (txids.length === 0 || userIds?.length === 0) return [];
  const ids = [...txids];
  let q = db
    .selectFrom('Alert')
    .select(wireColumns)
    .where(sql<boolean>`"txid" = ANY(${ids}::xid8[])`);
  // One array parameter, not one parameter per user: 10k users stay one short statement.
  if (userIds) q = q.where(sql<boolean>`"userId" = ANY(${[...userIds]}::text[])`);
  // Commit order is the order the notifications arrived in (= the order of `txids`), not the
  // numeric order of transaction ids, which are handed out at a transaction's first write.
  const rows = await q.orderBy(sql`array_position(${ids}::xid8[], "txid")`).orderBy('seq').execute();
  return rows.map(toWire);
}

function toWire(row: { createdAt: Date } & Omit<WireAlert, 'createdAt'>): WireAlert {
  return { ...row, createdAt: row.createdAt.toISOString() };
}

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
