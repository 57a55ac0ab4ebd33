/**
 * A database restored from another cluster: its bookkeeping's transaction ids re-stamped where
 * they are above what this cluster has handed out. Every daemon start, migrate and install runs
 * it; apart from the bookkeeping's creation because it concerns the rows, at any time, not the
 * schema.
 */
import pg from 'pg';
import { SCHEMA } from './mapping.js';

/** Postgres's answers that mean "another transaction got there first": the re-stamp is tried again. */
const RETRY_CODES = new Set(['40001', '40P01', '55P03']);
/** How often, and how long in all (about 10 s), before giving up until the next start. */
const ATTEMPTS = 40;

/** The re-stamp gave up: writers kept changing the foreign rows. */
export class RestampError extends Error {}

/**
 * A database restored (pg_dump, pg_restore) into another cluster keeps the transaction ids its
 * bookkeeping was stamped with in the old one. Where those are above what this cluster has
 * handed out, every horizon is below them: the rows would be re-read by every sync and poll,
 * and a relay would catch up from a horizon in the future (publishing nothing). They are
 * re-stamped as old ('3', the first normal transaction id): cursors from the old cluster reset
 * anyway (the database id includes the cluster's). Returns how many rows were re-stamped.
 *
 * Every daemon start runs this while the app may be writing, so it never makes a writer wait
 * for a lock of its own, let alone fail:
 * - The look is one statement: a row its snapshot sees was committed before it, so its ids are
 *   below the snapshot's xmax; a row at or above it can only come from another cluster. (Taken
 *   in two statements, rows committed in between looked foreign, and every start under write
 *   load went on to lock the tables.)
 * - The re-stamp takes no table lock. It runs at REPEATABLE READ, so its UPDATEs touch only the
 *   rows its snapshot sees above its xmax: a row a writer changed since is a serialization
 *   failure for this transaction (never a write of the writer's fresh stamp), and it waits at
 *   most 50 ms for a writer's row lock (lock_timeout), giving up first in any deadlock. Either
 *   way it rolls back and tries again. (A table lock here queued writers behind it, and a writer
 *   moving an alert, which takes "AlertTombstone" before "AlertChange", deadlocked with it.)
 *   A writer can wait on a row this transaction re-stamped, only after a restore, for as long as
 *   the re-stamp runs.
 */
export async function renormalizeForeignTxids(client: pg.Client): Promise<number> {
  const above = async () =>
    Number(
      (
        await client.query<{ n: string }>(
          `WITH b AS (SELECT pg_snapshot_xmax(pg_current_snapshot()) AS x)
           SELECT (SELECT count(*) FROM ${SCHEMA}."AlertChange", b WHERE txid >= b.x OR "changedTxid" >= b.x)
                + (SELECT count(*) FROM ${SCHEMA}."AlertTombstone", b WHERE txid >= b.x)
                + (SELECT count(*) FROM ${SCHEMA}.preference, b WHERE "changedTxid" >= b.x)
                + (SELECT count(*) FROM ${SCHEMA}.pgbell_state, b WHERE "relayTxid" >= b.x OR "prunedTxid" >= b.x) AS n`,
        )
      ).rows[0]!.n,
    );
  if ((await above()) === 0) return 0;
  for (let attempt = 1; ; attempt++) {
    try {
      return await restamp(client);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (!code || !RETRY_CODES.has(code)) throw err;
      if (attempt >= ATTEMPTS) throw new RestampError(`could not re-stamp the bookkeeping rows restored from another cluster: writers kept changing them (${(err as Error).message}); the next start tries again`);
      await new Promise((r) => setTimeout(r, Math.min(500, 20 * attempt)));
    }
  }
}

async function restamp(client: pg.Client): Promise<number> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  try {
    await client.query(`SET LOCAL lock_timeout = '50ms'`);
    // The transaction's snapshot is taken here: every bound below is its xmax.
    const x = (await client.query<{ x: string }>(`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x`)).rows[0]!.x;
    const changes = await client.query(
      `UPDATE ${SCHEMA}."AlertChange" SET txid = CASE WHEN txid >= $1::xid8 THEN '3'::xid8 ELSE txid END,
                          "changedTxid" = CASE WHEN "changedTxid" >= $1::xid8 THEN '3'::xid8 ELSE "changedTxid" END
        WHERE txid >= $1::xid8 OR "changedTxid" >= $1::xid8`,
      [x],
    );
    const tombstones = await client.query(`UPDATE ${SCHEMA}."AlertTombstone" SET txid = '3' WHERE txid >= $1::xid8`, [x]);
    const preferences = await client.query(`UPDATE ${SCHEMA}.preference SET "changedTxid" = '3' WHERE "changedTxid" >= $1::xid8`, [x]);
    const state = await client.query(
      `UPDATE ${SCHEMA}.pgbell_state SET "relayTxid" = CASE WHEN "relayTxid" >= $1::xid8 THEN NULL ELSE "relayTxid" END,
                               "prunedTxid" = CASE WHEN "prunedTxid" >= $1::xid8 THEN '0'::xid8 ELSE "prunedTxid" END
        WHERE "relayTxid" >= $1::xid8 OR "prunedTxid" >= $1::xid8`,
      [x],
    );
    await client.query('COMMIT');
    return (changes.rowCount ?? 0) + (tombstones.rowCount ?? 0) + (preferences.rowCount ?? 0) + (state.rowCount ?? 0);
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
