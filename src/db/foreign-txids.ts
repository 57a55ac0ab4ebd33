/**
 * A database restored from another cluster: its bookkeeping's transaction ids re-stamped where
 * they are above what this cluster has handed out. Every daemon start, migrate and install runs
 * it; apart from the bookkeeping's creation because it concerns the rows, at any time, not the
 * schema.
 */
import pg from 'pg';
import { inTransaction } from './lock.js';
import { SCHEMA } from './mapping.js';

/**
 * A database restored (pg_dump, pg_restore) into another cluster keeps the transaction ids its
 * bookkeeping was stamped with in the old one. Where those are above what this cluster has
 * handed out, every horizon is below them: the rows would be re-read by every sync and poll,
 * and a relay would catch up from a horizon in the future (publishing nothing). They are
 * re-stamped as old ('3', the first normal transaction id): cursors from the old cluster reset
 * anyway (the database id includes the cluster's). Returns how many rows were re-stamped.
 *
 * Every daemon start runs this while the app may be writing. A snapshot's xmax bounds only
 * the transactions committed before it: a row committed a moment later has an id at or above
 * it and is no restore. So the first look (no lock) only says whether to look again; the
 * second holds the bookkeeping tables against writers, takes its bound then, and re-stamps
 * only what is above it.
 */
export async function renormalizeForeignTxids(client: pg.Client): Promise<number> {
  const above = (x: string) =>
    client.query<{ n: string }>(
      `SELECT (SELECT count(*) FROM ${SCHEMA}."AlertChange" WHERE txid >= $1::xid8 OR "changedTxid" >= $1::xid8)
            + (SELECT count(*) FROM ${SCHEMA}."AlertTombstone" WHERE txid >= $1::xid8)
            + (SELECT count(*) FROM ${SCHEMA}.preference WHERE "changedTxid" >= $1::xid8)
            + (SELECT count(*) FROM ${SCHEMA}.pgbell_state WHERE "relayTxid" >= $1::xid8 OR "prunedTxid" >= $1::xid8) AS n`,
      [x],
    );
  const bound = async () => (await client.query<{ x: string }>(`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x`)).rows[0]!.x;
  if (Number((await above(await bound())).rows[0]!.n) === 0) return 0;
  return inTransaction(client, async () => {
    // A writer holds ROW EXCLUSIVE on these until it commits: once this lock is granted, every
    // row here was committed, so below the bound taken next.
    await client.query(`LOCK TABLE ${SCHEMA}."AlertChange", ${SCHEMA}."AlertTombstone", ${SCHEMA}.preference, ${SCHEMA}.pgbell_state IN SHARE ROW EXCLUSIVE MODE`);
    const x = await bound();
    const n = Number((await above(x)).rows[0]!.n);
    if (n === 0) return 0;
    await client.query(
      `UPDATE ${SCHEMA}."AlertChange" SET txid = CASE WHEN txid >= $1::xid8 THEN '3'::xid8 ELSE txid END,
                          "changedTxid" = CASE WHEN "changedTxid" >= $1::xid8 THEN '3'::xid8 ELSE "changedTxid" END
        WHERE txid >= $1::xid8 OR "changedTxid" >= $1::xid8`,
      [x],
    );
    await client.query(`UPDATE ${SCHEMA}."AlertTombstone" SET txid = '3' WHERE txid >= $1::xid8`, [x]);
    await client.query(`UPDATE ${SCHEMA}.preference SET "changedTxid" = '3' WHERE "changedTxid" >= $1::xid8`, [x]);
    await client.query(
      `UPDATE ${SCHEMA}.pgbell_state SET "relayTxid" = CASE WHEN "relayTxid" >= $1::xid8 THEN NULL ELSE "relayTxid" END,
                               "prunedTxid" = CASE WHEN "prunedTxid" >= $1::xid8 THEN '0'::xid8 ELSE "prunedTxid" END`,
      [x],
    );
    return n;
  });
}
