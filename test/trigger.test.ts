/**
 * The triggers, seen from a plain LISTEN connection and from pgbell's bookkeeping: what they
 * send and record, and that they never hurt the writer.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, query } from './helpers/pg.js';

let db: string;
let listener: pg.Client;
const received: string[] = [];

beforeAll(async () => {
  db = await freshDatabase(['alice']);
  listener = new pg.Client({ connectionString: db });
  await listener.connect();
  listener.on('notification', (n) => received.push(n.payload ?? ''));
  await listener.query('LISTEN pgbell');
});
afterAll(async () => {
  await listener?.end();
});

/**
 * Commits a sentinel transaction and waits for its notification: everything committed before it
 * has arrived. Returns (and forgets) what arrived since the last flush, sentinels excluded.
 */
async function flush(): Promise<string[]> {
  const [{ txid }] = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'sentinel') RETURNING pg_current_xact_id()::text AS txid`)) as [{ txid: string }];
  const deadline = Date.now() + 5000;
  while (!received.some((p) => p.includes(`"${txid}"`))) {
    if (Date.now() > deadline) throw new Error('sentinel notification never arrived');
    await new Promise((r) => setTimeout(r, 10));
  }
  const got = [...received];
  received.length = 0;
  return got.filter((p) => !p.includes(`"${txid}"`));
}

describe('tg_alert__notify', () => {
  it('sends one small {"txid"} payload per transaction, matching the bookkeeping\'s "txid"', async () => {
    await flush();
    const client = new pg.Client({ connectionString: db });
    await client.connect();
    await client.query('BEGIN');
    await client.query(`INSERT INTO "Alert" ("userId", title) SELECT 'alice', 'bulk ' || i FROM generate_series(1, 1000) i`);
    await client.query(`INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'one more')`);
    const { rows } = await client.query(`SELECT DISTINCT c.txid::text AS txid FROM pgbell."AlertChange" c JOIN "Alert" a ON a.id = c.key WHERE a.title <> 'sentinel' AND c.txid = pg_current_xact_id()`);
    await client.query('COMMIT');
    await client.end();
    expect(rows).toHaveLength(1);
    const got = await flush();
    expect(got.map((p) => JSON.parse(p))).toEqual([{ txid: rows[0].txid }]);
    // One bookkeeping row per alert, in insertion order.
    const seqs = await query(db, `SELECT a.title FROM pgbell."AlertChange" c JOIN "Alert" a ON a.id = c.key WHERE c.txid = $1::xid8 ORDER BY c.seq`, [rows[0].txid]);
    expect(seqs.map((r) => r.title)).toEqual([...Array.from({ length: 1000 }, (_, i) => `bulk ${i + 1}`), 'one more']);
  });

  it('UPDATE notifies and stamps "changedTxid"; an UPDATE that changes nothing leaves the row alone', async () => {
    const { id, t0 } = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'to update') RETURNING id, pg_current_xact_id()::text AS t0`))[0]!;
    const book = async () => (await query(db, `SELECT txid::text AS ins, "changedTxid"::text AS changed, read FROM pgbell."AlertChange" WHERE key = $1`, [id]))[0]!;
    expect(await book()).toEqual({ ins: t0, changed: t0, read: false });
    await flush();
    const { t1 } = (await query(db, `UPDATE "Alert" SET read = true WHERE id = $1 RETURNING pg_current_xact_id()::text AS t1`, [id]))[0]!;
    expect(t1).not.toBe(t0);
    expect((await flush()).map((p) => JSON.parse(p).txid)).toEqual([t1]);
    expect(await book()).toEqual({ ins: t0, changed: t1, read: true });
    await query(db, `UPDATE "Alert" SET read = true WHERE id = $1`, [id]);
    expect(await book()).toEqual({ ins: t0, changed: t1, read: true }); // no-op update: not a change
    expect(await flush()).toEqual([]);
  });

  it('DELETE keeps a tombstone and notifies; a DELETE of nothing sends nothing', async () => {
    const { id } = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'to delete') RETURNING id`))[0]!;
    await flush();
    const { me } = (await query(db, `WITH d AS (DELETE FROM "Alert" WHERE id = $1 RETURNING 1) SELECT pg_current_xact_id()::text AS me FROM d`, [id]))[0]!;
    expect((await flush()).map((p) => JSON.parse(p).txid)).toEqual([me]);
    expect(await query(db, `SELECT id, "userId", txid::text AS txid FROM pgbell."AlertTombstone" WHERE id = $1`, [id])).toEqual([{ id, userId: 'alice', txid: me }]);
    expect(await query(db, `SELECT 1 FROM pgbell."AlertChange" WHERE key = $1`, [id])).toEqual([]);
    await query(db, `DELETE FROM "Alert" WHERE id = 'no-such-id'`);
    expect(await flush()).toEqual([]);
  });

  it.each([
    ['20 kB', 20 * 1024],
    ['1 MB', 1024 * 1024],
  ])('a %s row inserts fine and the payload stays tiny', async (_l, size) => {
    await flush();
    await query(db, `INSERT INTO "Alert" ("userId", title, message, data) VALUES ('alice', $1, $2, $3)`, ['t'.repeat(size), 'm'.repeat(size), { x: 'd'.repeat(size) }]);
    const got = await flush();
    expect(got).toHaveLength(1);
    expect(got[0]!.length).toBeLessThan(64);
  });

  it('a rolled-back transaction, or a rolled-back savepoint, sends nothing', async () => {
    await flush();
    await query(db, `BEGIN; INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'no'); ROLLBACK;`);
    expect(await flush()).toEqual([]);
    await query(
      db,
      `BEGIN;
       SAVEPOINT s; INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'undone'); ROLLBACK TO SAVEPOINT s;
       INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'kept');
       COMMIT;`,
    );
    const after = await flush();
    expect(after).toHaveLength(1);
    expect((await query(db, `SELECT title FROM "Alert" WHERE title IN ('undone','kept')`)).map((r) => r.title)).toEqual(['kept']);
  });

  it('a failing insert (foreign key) sends nothing and the error is the writer\'s own', async () => {
    await flush();
    await expect(query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('nobody', 'x')`)).rejects.toThrow(/foreign key/);
    expect(await flush()).toEqual([]);
  });

  it('TRUNCATE leaves a tombstone for every alert', async () => {
    const scratch = await freshDatabase(['tt']);
    await query(scratch, `INSERT INTO "Alert" ("userId", title) SELECT 'tt', 'n' || i FROM generate_series(1, 3) i`);
    const ids = (await query(scratch, `SELECT id FROM "Alert" ORDER BY id`)).map((r) => r.id);
    await query(scratch, `TRUNCATE "Alert"`);
    expect((await query(scratch, `SELECT id FROM pgbell."AlertTombstone" ORDER BY id`)).map((r) => r.id)).toEqual(ids);
    expect(await query(scratch, `SELECT 1 FROM pgbell."AlertChange"`)).toEqual([]);
  });
});
