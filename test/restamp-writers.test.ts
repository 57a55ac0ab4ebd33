/**
 * The re-stamp of bookkeeping restored from another cluster (renormalizeForeignTxids, run at
 * every daemon start, migrate and install) never makes a writer wait for it or fail. It locked
 * pgbell's four tables in SHARE ROW EXCLUSIVE mode: queued behind one writer's transaction, it
 * held up every other writer, and a writer moving an alert to another user (which takes
 * "AlertTombstone" before "AlertChange") deadlocked with it and was aborted (40P01). Its first
 * look also took its bound and counted in two statements, so rows committed in between looked
 * foreign and every start under write load went on to lock.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renormalizeForeignTxids } from '../src/db/bookkeeping.js';
import { freshDatabase, query } from './helpers/pg.js';

let db: string;
const clients: pg.Client[] = [];

async function connect(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db });
  c.on('error', () => {});
  await c.connect();
  clients.push(c);
  return c;
}

/** A row stamped in this server's future, as a restore from another cluster leaves it. */
async function stampFuture(id: string): Promise<void> {
  await query(db, `UPDATE pgbell."AlertChange" SET "changedTxid" = (pg_current_xact_id()::text::bigint + 100000)::text::xid8 WHERE id = $1`, [id]);
}

beforeAll(async () => {
  db = await freshDatabase(['alice', 'bob']);
});
afterAll(async () => {
  for (const c of clients) await c.end().catch(() => {});
});

describe('re-stamping restored rows beside writers', () => {
  it('a writer moving an alert while another writer holds a row neither waits for the re-stamp nor fails; the re-stamp finishes once the row is free', async () => {
    await query(db, `INSERT INTO "Alert" (id, "userId", title) VALUES ('A', 'alice', 'a'), ('B', 'alice', 'b')`);
    await stampFuture('A');
    const [holder, mover, daemon] = [await connect(), await connect(), await connect()];
    // Holds row A (and ROW EXCLUSIVE on the bookkeeping) until it commits.
    await holder.query('BEGIN');
    await holder.query(`UPDATE "Alert" SET read = true WHERE id = 'A'`);
    const restamp = renormalizeForeignTxids(daemon).then(
      (n) => ({ ok: true as const, n }),
      (err: Error & { code?: string }) => ({ ok: false as const, err }),
    );
    await new Promise((r) => setTimeout(r, 300));
    // A move takes "AlertTombstone", then "AlertChange": with the re-stamp queued for a table
    // lock, it waited, and then was chosen as the deadlock's victim.
    const t0 = performance.now();
    await mover.query(`SET statement_timeout = '5s'`);
    try {
      await mover.query('BEGIN');
      await mover.query(`UPDATE "Alert" SET "userId" = 'bob' WHERE id = 'B'`);
      await mover.query('COMMIT');
    } catch (err) {
      await mover.query('ROLLBACK');
      await holder.query('COMMIT');
      throw err;
    }
    const moveMs = performance.now() - t0;
    // It did not wait for the holder (still open), nor for the re-stamp.
    expect(moveMs).toBeLessThan(2000);
    const fresh = await query<{ txid: string }>(db, `SELECT "changedTxid"::text AS txid FROM pgbell."AlertChange" WHERE id = 'B'`);
    await holder.query('COMMIT');
    const result = await restamp;
    expect(result.ok ? 'done' : `${result.err.code} ${result.err.message}`).toBe('done');
    // The holder's update of A is a real change, after the re-stamp's snapshot or before: A is no
    // longer in the future either way, and B keeps the mover's own stamp.
    const rows = await query<{ id: string; txid: string; future: boolean }>(
      db,
      `SELECT id, "changedTxid"::text AS txid, "changedTxid" >= pg_snapshot_xmax(pg_current_snapshot()) AS future FROM pgbell."AlertChange" ORDER BY id`,
    );
    expect(rows.map((r) => [r.id, r.future])).toEqual([
      ['A', false],
      ['B', false],
    ]);
    expect(rows.find((r) => r.id === 'B')!.txid).toBe(fresh[0]!.txid);
    expect(rows.find((r) => r.id === 'B')!.txid).not.toBe('3');
  });

  it('with writers committing throughout and nothing restored, it finds nothing and re-stamps nothing', async () => {
    const daemon = await connect();
    const writers = [await connect(), await connect()];
    let writing = true;
    let n = 0;
    const loops = writers.map(async (w, i) => {
      while (writing) await w.query(`INSERT INTO "Alert" ("userId", title) VALUES ($1, $2)`, [i === 0 ? 'alice' : 'bob', `w${n++}`]);
    });
    try {
      for (let k = 0; k < 30; k++) expect(await renormalizeForeignTxids(daemon)).toBe(0);
    } finally {
      writing = false;
      await Promise.all(loops);
    }
    expect(n).toBeGreaterThan(0);
    const { stamped } = (await query<{ stamped: number }>(db, `SELECT count(*)::int AS stamped FROM pgbell."AlertChange" WHERE "changedTxid" = '3'`))[0]!;
    expect(stamped).toBe(0);
  });
});
