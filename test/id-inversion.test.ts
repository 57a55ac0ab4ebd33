/**
 * Transaction ids run against commit order: a transaction that took its id first can commit
 * last. When it brings an alert back to its user (re-inserts its id, or moves it back) after a
 * later-numbered transaction deleted it or moved it away, the alert exists, and every path ends
 * with it, in every mode and through Redis fan-out: live, a resume from before both, `?after=` (also when a page ends
 * between the two), and a socket whose type filter leaves the re-inserted alert out (it must
 * drop the old one). Read in id order, the older tombstone would come after the row; read after
 * both committed, it is left out and the row stands in for it (see OUTLIVED).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DaemonOptions } from '../src/daemon/daemon.js';
import { cleanEnv, run } from './helpers/cli.js';
import { TestClient } from './helpers/client.js';
import { daemonFleet, health, tokenFor } from './helpers/daemon.js';
import { changesByTxids, changesSince, changesSinceAll } from '../src/db/changes.js';
import { createDb } from '../src/db/connect.js';
import { MODES } from './helpers/modes.js';
import { freshDatabase, query } from './helpers/pg.js';
import { arrived, held, until } from './helpers/tab.js';

/**
 * Runs `earlier` in a transaction that takes its id first and commits last, after `later` (run
 * and committed meanwhile, with the higher id). Live reads wait on a lock of a table only they
 * read until both have committed, so that they find the tombstones outlived.
 */
async function inverted(db: string, later: string, earlier: string): Promise<void> {
  const early = new pg.Client({ connectionString: db });
  const reads = new pg.Client({ connectionString: db });
  await early.connect();
  await reads.connect();
  try {
    await reads.query(`BEGIN; SET LOCAL search_path = pgbell, public; LOCK TABLE preference IN ACCESS EXCLUSIVE MODE`);
    await early.query('BEGIN');
    await early.query('SELECT pg_current_xact_id()');
    await query(db, later);
    await early.query(earlier);
    await early.query('COMMIT');
    await new Promise((r) => setTimeout(r, 300));
    await reads.query('COMMIT');
  } finally {
    await early.end();
    await reads.end();
  }
}

/** A polling client's state (`state`, changed) after applying `?after=` pages from `cursor` until `more` is false. */
async function polled(base: string, token: string, cursor: string, types: string, state: Map<string, any>): Promise<{ state: Map<string, any>; pages: number }> {
  let pages = 0;
  for (let more = true; more; ) {
    const res = await fetch(`${base}/alerts?after=${encodeURIComponent(cursor)}${types}`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { alerts: any[]; deleted: string[]; cursor: string; more: boolean };
    for (const a of body.alerts) state.set(a.id, a);
    for (const id of body.deleted) state.delete(id);
    cursor = body.cursor;
    more = body.more;
    pages++;
  }
  return { state, pages };
}


const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const SETUPS: Record<string, Partial<DaemonOptions>> = { ...MODES, 'notify with Redis fan-out': { mode: 'notify', fanout: 'redis', redisUrl: REDIS_URL } };

describe.each(Object.keys(SETUPS))('%s', (setup) => {
  let db: string;
  const fleet = daemonFleet(() => db);
  const mode = SETUPS[setup]!.mode!;
  beforeAll(async () => {
    db = await freshDatabase(['inv', 'away']);
    expect((await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: mode }))).code).toBe(0);
  });
  afterAll(() => fleet.stopAll());

  it('an alert brought back by the transaction that began first exists on every path', async () => {
    const d = await fleet.start(SETUPS[setup]);
    // The first relay a database has publishes from when it starts: the writes wait for it.
    if (SETUPS[setup]!.fanout === 'redis') await until(async () => (await health(d.http)).body.listener.relay === true, 15_000, 'the relay');
    const token = await tokenFor('inv');
    const connect = async (types?: string[]) => {
      const c = await TestClient.connect(d.url);
      c.send({ type: 'auth', token, ...(types ? { types } : {}) });
      await c.next((m) => m.type === 'synced');
      return c;
    };
    const all = await connect();
    const typed = await connect(['a']);
    const p = `${setup.split(' ')[0]}${setup.length}-`;
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('${p}x', 'inv', 'a', 'first'), ('${p}y', 'inv', 'a', 'mover'), ('${p}z', 'inv', 'a', 'typed')`);
    await all.next(arrived(`${p}z`));
    await typed.next(arrived(`${p}z`));
    const before = all.messages.filter((m) => typeof m.cursor === 'string').at(-1)!.cursor as string;
    const typedBefore = typed.messages.filter((m) => typeof m.cursor === 'string').at(-1)!.cursor as string;

    // The early transaction takes its id, then a later one deletes x and z and moves y away
    // and commits; then the early one brings all three back (z as another type) and, with
    // them, an alert over a page's bytes, so that a `?after=` page ends before the tombstones.
    await inverted(
      db,
      `BEGIN; DELETE FROM "Alert" WHERE id IN ('${p}x', '${p}z'); UPDATE "Alert" SET "userId" = 'away' WHERE id = '${p}y'; COMMIT;`,
      `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('${p}x', 'inv', 'a', 'back'), ('${p}z', 'inv', 'b', 'now b');
       UPDATE "Alert" SET "userId" = 'inv', title = 'home' WHERE id = '${p}y';
       INSERT INTO "Alert" (id, "userId", type, title, message) VALUES ('${p}big', 'inv', 'a', 'big', repeat('m', 1100000))`,
    );
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('${p}marker', 'inv', 'a', 'marker')`);
    await all.next(arrived(`${p}marker`));
    await typed.next(arrived(`${p}marker`));

    const expectAll = (state: Map<string, any>, path: string) => {
      expect([state.get(`${p}x`)?.title, state.get(`${p}y`)?.title, state.get(`${p}z`)?.title], path).toEqual(['back', 'home', 'now b']);
    };
    const expectTyped = (state: Map<string, any>, path: string) => {
      expect([state.get(`${p}x`)?.title, state.get(`${p}y`)?.title, state.has(`${p}z`)], path).toEqual(['back', 'home', false]);
    };
    expectAll(held(all.messages), 'live');
    expectTyped(held(typed.messages), 'live, types a');
    all.close();
    typed.close();

    // A resume from before both transactions.
    const resume = async (cursor: string, types?: string[]) => {
      const c = await TestClient.connect(d.url);
      c.send({ type: 'auth', token, after: cursor, ...(types ? { types } : {}) });
      await c.next((m) => m.type === 'synced');
      await until(() => c.messages.some(arrived(`${p}marker`)), 10_000, 'the marker on resume');
      c.close();
      // What the client held before the cursor, then what the resume sent.
      return held([{ type: 'notifications', alerts: [{ id: `${p}x`, title: 'first' }, { id: `${p}y`, title: 'mover' }, { id: `${p}z`, title: 'typed' }] }, ...c.messages]);
    };
    expectAll(await resume(before), 'resume');
    expectTyped(await resume(typedBefore, ['a']), 'resume, types a');

    // `?after=`: the early transaction's rows fill a page, the tombstones come on the next.
    const held0 = () => new Map<string, any>([[`${p}x`, { title: 'first' }], [`${p}y`, { title: 'mover' }], [`${p}z`, { title: 'typed' }]]);
    const paged = await polled(d.http, token, before, '', held0());
    expect(paged.pages).toBeGreaterThan(1);
    expectAll(paged.state, '?after=');
    expectTyped((await polled(d.http, token, typedBefore, '&types=a', held0())).state, '?after=&types=a');
  });
});

describe('WAL mode, a delete read by id beside a re-insert the stream carried', () => {
  let db: string;
  const fleet = daemonFleet(() => db);
  beforeAll(async () => {
    db = await freshDatabase(['inw']);
    expect((await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'wal' }))).code).toBe(0);
  });
  afterAll(() => fleet.stopAll());

  // The stream's changes carry no flags: the delete, read after both committed, must still be
  // sent, in commit order before the row (a read that left it out had no row to stand in for it).
  it('a socket whose type filter leaves the re-inserted alert out drops the old one', async () => {
    const d = await fleet.start({ mode: 'wal' });
    const typed = await TestClient.connect(d.url);
    typed.send({ type: 'auth', token: await tokenFor('inw'), types: ['a'] });
    await typed.next((m) => m.type === 'synced');
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title, message) VALUES ('big', 'inw', 'a', 'big', (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 5000)))`);
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('x', 'inw', 'a', 'first')`);
    await typed.next(arrived('x'));
    await inverted(
      db,
      // The later id deletes x; its update of big leaves the TOASTed message out: read by id.
      `BEGIN; DELETE FROM "Alert" WHERE id = 'x'; UPDATE "Alert" SET read = true WHERE id = 'big'; COMMIT;`,
      // The earlier id, committing last: x again, now of type b, carried by the stream.
      `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('x', 'inw', 'b', 'now b')`,
    );
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('marker', 'inw', 'a', 'marker')`);
    await typed.next(arrived('marker'));
    typed.close();
    expect(held(typed.messages).has('x'), 'x is of type b now').toBe(false);
  });
});

// A Redis node of an older pgbell reads no `outlived` flag and sends every delete: within one
// transaction, a delete of an alert the transaction re-inserted goes before the row in every read
// a relay publishes from (and in a resume's), or such a node's client would drop the alert.
it('a delete and re-insert in one transaction: every read hands the delete on before the row', async () => {
  const url = await freshDatabase(['ov']);
  const db = createDb(url);
  try {
    await query(url, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('x', 'ov', 'a', 'first')`);
    const w = new pg.Client({ connectionString: url });
    await w.connect();
    await w.query(`BEGIN; DELETE FROM "Alert" WHERE id = 'x'; INSERT INTO "Alert" (id, "userId", type, title) VALUES ('x', 'ov', 'a', 'again')`);
    const t = (await w.query<{ t: string }>('SELECT pg_current_xact_id()::text AS t')).rows[0]!.t;
    await w.query('COMMIT');
    await w.end();
    const shape = (changes: Array<{ kind: string; outlived?: boolean }>) => changes.filter((c) => c.kind !== 'preferences').map((c) => `${c.kind}${c.outlived ? ' (outlived)' : ''}`);
    expect(shape((await changesByTxids(db, [t], 'all')).changes), 'live').toEqual(['delete (outlived)', 'alert']);
    expect(shape((await changesSinceAll(db, BigInt(t), 1000)).batch.changes), 'relay catch-up').toEqual(['delete (outlived)', 'alert']);
    expect(shape((await changesSince(db, [{ userId: 'ov', after: BigInt(t) }], 1000)).changes), 'resume').toEqual(['delete (outlived)', 'alert']);
  } finally {
    await db.destroy();
  }
});
