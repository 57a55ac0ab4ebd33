/**
 * A database restored from another cluster carries bookkeeping stamped with transaction ids
 * this server has not handed out. `pgbell install` and the daemon's start re-stamp them, and no
 * cursor takes an id at or above its read's xmax: when this server later hands those ids to
 * real transactions, their alerts are delivered.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, run } from './helpers/cli.js';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { emptyDatabase, psql, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let db: string;
const fleet = daemonFleet(() => db);
const INSTALL = ['install', '--table', 'public.inbox', '--user-column', 'owner', '--title-column', 'title'];

/** Stamps every bookkeeping row with its own id from this server's future, as a restore would leave them; returns the first. */
async function stampFuture(): Promise<bigint> {
  const { f } = (await query<{ f: string }>(db, `SELECT (pg_current_xact_id()::text::bigint + 500)::text AS f`))[0]!;
  await query(db, `UPDATE pgbell."AlertChange" c SET txid = (${f} + r.n)::text::xid8, "changedTxid" = (${f} + r.n)::text::xid8
                     FROM (SELECT key, row_number() OVER (ORDER BY key) AS n FROM pgbell."AlertChange") r WHERE r.key = c.key`);
  return BigInt(f!);
}

beforeAll(async () => {
  db = await emptyDatabase('restore');
  await psql(db, `CREATE TABLE public.inbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, owner text NOT NULL, title text)`);
  expect((await run(INSTALL, cleanEnv({ DATABASE_URL: db }))).code).toBe(0);
  await query(db, `INSERT INTO public.inbox (owner, title) SELECT 'ru', 'restored ' || g FROM generate_series(1, 200) g`);
});
afterAll(() => fleet.stopAll());

describe('a restore from another cluster', () => {
  it('pgbell install re-stamps rows whose transaction ids are in this server\'s future', async () => {
    const f = await stampFuture();
    const r = await run(INSTALL, cleanEnv({ DATABASE_URL: db }));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/re-stamped 200 bookkeeping rows/);
    const { n } = (await query<{ n: number }>(db, `SELECT count(*)::int AS n FROM pgbell."AlertChange" WHERE "changedTxid" >= $1::text::xid8`, [f.toString()]))[0]!;
    expect(n).toBe(0);
  });

  it('the daemon re-stamps at start; the real transactions later given those ids reach the tab', async () => {
    const f = await stampFuture();
    const d = await fleet.start();
    expect(d.logs.messages().some((m) => /re-stamped 200 bookkeeping rows/.test(m))).toBe(true);
    const tab = await new Tab(await tokenFor('ru')).connect(d.url);
    // This server now hands out the ids the restore had used, to real transactions.
    const { now } = (await query<{ now: string }>(db, `SELECT pg_current_xact_id()::text AS now`))[0]!;
    const burn = Number(f - BigInt(now!));
    if (burn > 0) await query(db, `DO $$ BEGIN FOR i IN 1..${burn} LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$`);
    await query(db, `DO $$ BEGIN FOR i IN 1..250 LOOP INSERT INTO public.inbox (owner, title) VALUES ('ru', 'real ' || i); COMMIT; END LOOP; END $$`);
    const want = (await query<{ id: string }>(db, `SELECT id::text AS id FROM public.inbox WHERE title LIKE 'real %'`)).map((r) => r.id);
    await until(() => want.every((id) => tab.ids.has(id)), 20_000, 'every real alert');
    tab.close();
  }, 60_000);
});

describe('a commit lost in a crash (synchronous_commit = off)', () => {
  it('a cursor holding a transaction id the database has not handed out is reset, on a socket and on ?after=', async () => {
    const { createDb } = await import('../src/db/connect.js');
    const { currentEpoch } = await import('../src/db/changes.js');
    const { CursorState } = await import('../src/delivery/cursor.js');
    const kdb = createDb(db);
    const epoch = await currentEpoch(kdb);
    await kdb.destroy();
    const { xmin, xmax } = (await query<{ xmin: string; xmax: string }>(db, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin, pg_snapshot_xmax(pg_current_snapshot())::text AS xmax`))[0]!;
    // What a tab holds after it was sent a transaction that a crash then lost: an id the
    // restarted server will hand out again. Far enough ahead that the test files running beside
    // this one on the same cluster (transaction ids are the cluster's) cannot reach it before the
    // daemon reads the cursor: at +3 they did, once, and the cursor was no longer ahead.
    const lost = new CursorState(BigInt(xmin!), [BigInt(xmax!) + 100_000n]).encode(epoch);
    const d = await fleet.start();
    const tab = new Tab(await tokenFor('ru'));
    tab.cursor = lost;
    await tab.connect(d.url);
    expect(tab.resets).toBe(1);
    const msg = tab.client!.messages.find((m) => m.type === 'reset');
    expect(msg.reason).toMatch(/has not committed/);
    const res = await fetch(`${d.http}/alerts?after=${encodeURIComponent(lost)}`, { headers: { authorization: `Bearer ${await tokenFor('ru')}` } });
    expect(res.status).toBe(410);
    // Its new cursor does not skip what the database gives later transactions.
    for (let i = 0; i < 10; i++) await query(db, `INSERT INTO public.inbox (owner, title) VALUES ('ru', 'after the crash ' || ${i})`);
    const want = (await query<{ id: string }>(db, `SELECT id::text AS id FROM public.inbox WHERE title LIKE 'after the crash %'`)).map((r) => r.id);
    await until(() => want.every((id) => tab.ids.has(id)), 10_000, 'the alerts after the reset');
    tab.close();
  });
});

describe('pgbell doctor on durability', () => {
  it('says whether synchronous_commit and fsync let a crash lose a delivered commit', async () => {
    const { sc, fsync } = (await query<{ sc: string; fsync: string }>(db, `SELECT current_setting('synchronous_commit') AS sc, current_setting('fsync') AS fsync`))[0]!;
    const r = await run(['doctor'], cleanEnv({ DATABASE_URL: db }));
    if (sc === 'off' || fsync === 'off') expect(r.stdout).toMatch(/✓ durability: .*off by default: a crash can lose commits a tab already showed/);
    else expect(r.stdout).toMatch(/✓ durability: synchronous_commit \S+, fsync on: what pgbell delivers survives a crash/);
  });
});
