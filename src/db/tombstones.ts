/**
 * Pruning: deleted alerts' tombstones go after the retention period, and pgbell_state records
 * how far that went, so a resume from before it is reset instead of missing a delete. The
 * daemon runs it hourly. Apart from the reads of changes: it deletes, on a timer of its own,
 * what those reads look up.
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';

type Q = Kysely<Database>;

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
