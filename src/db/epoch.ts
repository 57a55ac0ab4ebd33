/**
 * What a cursor's transaction ids are valid in: the database's id (also in Redis channel names)
 * and the server's timeline (a failover or a point-in-time restore starts a new one). The reads
 * by cursor embed it in their SQL; the daemon, the relay and the poller ask for it alone.
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';

type Q = Kysely<Database>;

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
export const EPOCH = `(${DATABASE_ID} || '-' || ${TIMELINE})`;

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
