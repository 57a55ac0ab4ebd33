/**
 * The replication slot and its positions: a TEMPORARY slot made on the stream's own connection,
 * the snapshot it exports (and the wait until what it saw committed is visible to ordinary
 * snapshots), and LSNs as Postgres prints them. Separate from wal.ts, which owns the stream's
 * lifecycle: this is what one slot needs, whichever stream made it.
 */
import { sql } from 'kysely';
import type pg from 'pg';
import { PgoutputPlugin } from 'pg-logical-replication';
import { PUBLICATION } from '../db/bookkeeping.js';
import type { Db } from '../db/connect.js';

/**
 * pgoutput with a temporary slot made on the stream's own connection (a temporary slot lives as
 * long as the session that made it), and its snapshot handed to `ready` before streaming starts.
 */
export class SlotPlugin extends PgoutputPlugin {
  constructor(
    readonly slot: string,
    readonly ready: (client: pg.Client, snapshot: string) => Promise<void>,
  ) {
    super({ protoVersion: 1, publicationNames: [PUBLICATION], messages: true });
  }

  override async start(client: pg.Client, slotName: string): Promise<unknown> {
    const { rows } = await client.query<{ consistent_point: string; snapshot_name: string }>(`CREATE_REPLICATION_SLOT "${slotName}" TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT`);
    const { consistent_point: lsn, snapshot_name: snapshot } = rows[0]!;
    // The snapshot stays importable until this connection runs its next command.
    await this.ready(client, snapshot);
    return super.start(client, slotName, lsn);
  }
}

/**
 * The slot's snapshot `name` holds exactly what committed before the stream's first change.
 * A transaction whose commit record is written shows as running in other sessions'
 * snapshots for a moment more; until every one the slot's snapshot sees is visible to
 * ordinary snapshots too, a catch-up read could miss one the stream will not carry.
 */
export async function settle(db: Db, name: string): Promise<void> {
  const snapshot = await db.connection().execute(async (conn) => {
    await sql`BEGIN ISOLATION LEVEL REPEATABLE READ`.execute(conn);
    try {
      await sql`SET TRANSACTION SNAPSHOT ${sql.lit(name)}`.execute(conn);
      const { rows } = await sql<{ s: string }>`SELECT pg_current_snapshot()::text AS s`.execute(conn);
      return rows[0]!.s;
    } finally {
      await sql`COMMIT`.execute(conn);
    }
  });
  for (let i = 0; ; i++) {
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_snapshot_xip(pg_current_snapshot()) x
       WHERE pg_visible_in_snapshot(x, ${snapshot}::pg_snapshot)`.execute(db);
    if (rows[0]!.n === 0) return;
    if (i === 1000) throw new Error('transactions the slot saw committed stayed invisible for 2 s');
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** An LSN as Postgres prints it (`16/B374D848`) → a number. */
export function parseLsn(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}
