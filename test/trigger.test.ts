/** The trigger, seen from a plain LISTEN connection: what it sends, and that it never hurts the writer. */
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
  const [{ txid }] = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'sentinel') RETURNING "txid"::text AS txid`)) as [{ txid: string }];
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
  it('sends one small {"txid","xmin"} payload per transaction, matching the rows\' "txid"', async () => {
    await flush();
    const client = new pg.Client({ connectionString: db });
    await client.connect();
    await client.query('BEGIN');
    await client.query(`INSERT INTO "Alert" ("userId", title) SELECT 'alice', 'bulk ' || i FROM generate_series(1, 1000) i`);
    await client.query(`INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'one more')`);
    const { rows } = await client.query(`SELECT DISTINCT "txid"::text AS txid FROM "Alert" WHERE title <> 'sentinel' AND "txid" = pg_current_xact_id()`);
    await client.query('COMMIT');
    await client.end();
    expect(rows).toHaveLength(1);
    const got = await flush();
    expect(got.map((p) => JSON.parse(p))).toEqual([{ txid: rows[0].txid, xmin: expect.stringMatching(/^\d+$/) }]);
    expect(BigInt(JSON.parse(got[0]!).xmin)).toBeLessThanOrEqual(BigInt(rows[0].txid));
  });

  it('"xmin" stays at or below a transaction that is still open, so a resume re-reads it', async () => {
    await flush();
    const open = new pg.Client({ connectionString: db });
    await open.connect();
    await open.query('BEGIN');
    const [{ a }] = (await open.query(`INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'held open') RETURNING "txid"::text AS a`)).rows;
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'committed first')`);
    const got = (await flush()).map((p) => JSON.parse(p));
    expect(got).toHaveLength(1);
    expect(BigInt(got[0].txid)).toBeGreaterThan(BigInt(a));
    expect(BigInt(got[0].xmin)).toBeLessThanOrEqual(BigInt(a));
    await open.query('COMMIT');
    await open.end();
    expect((await flush()).map((p) => JSON.parse(p).txid)).toEqual([a]);
  });

  it('UPDATE notifies and stamps "changedTxid"; an UPDATE that changes nothing leaves the row alone', async () => {
    const { id, t0 } = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'to update') RETURNING id, "changedTxid"::text AS t0`))[0]!;
    await flush();
    const { t1 } = (await query(db, `UPDATE "Alert" SET read = true WHERE id = $1 RETURNING "changedTxid"::text AS t1, pg_current_xact_id()::text AS me`, [id]))[0]!;
    expect(t1).not.toBe(t0);
    expect((await flush()).map((p) => JSON.parse(p).txid)).toEqual([t1]);
    const { t2, ins } = (await query(db, `UPDATE "Alert" SET read = true WHERE id = $1 RETURNING "changedTxid"::text AS t2, txid::text AS ins`, [id]))[0]!;
    expect(t2).toBe(t1); // no-op update: not a change
    expect(ins).toBe(t0); // "txid" stays the inserting transaction
  });

  it('DELETE keeps a tombstone and notifies; a DELETE of nothing sends nothing', async () => {
    const { id } = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'to delete') RETURNING id`))[0]!;
    await flush();
    const { me } = (await query(db, `WITH d AS (DELETE FROM "Alert" WHERE id = $1 RETURNING 1) SELECT pg_current_xact_id()::text AS me FROM d`, [id]))[0]!;
    expect((await flush()).map((p) => JSON.parse(p).txid)).toEqual([me]);
    expect(await query(db, `SELECT id, "userId", txid::text AS txid FROM "AlertTombstone" WHERE id = $1`, [id])).toEqual([{ id, userId: 'alice', txid: me }]);
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
       INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'kept') RETURNING "txid"::text AS txid;
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
});
