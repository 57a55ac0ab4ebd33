/**
 * `notifications`: a socket that authenticates with `batch: true` gets each run of new alerts
 * from one moment as one frame. Same alerts, same order, same guarantees as one frame each.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished as onTeardown } from 'vitest';
import { TestClient } from './helpers/client.js';
import { startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let db: string;
let daemon: TestDaemon;

beforeAll(async () => {
  db = await freshDatabase(['ann', 'ben']);
  daemon = await startTestDaemon(db);
});
afterAll(() => daemon?.stop());

async function socket(userId: string, batch: boolean, on: TestDaemon = daemon): Promise<TestClient> {
  const c = await TestClient.connect(on.url);
  c.send({ type: 'auth', token: await tokenFor(userId), ...(batch ? { batch: true } : {}) });
  await c.next((m) => m.type === 'synced');
  return c;
}

describe('batched delivery', () => {
  it('one statement inserting 5 alerts: one notifications frame for a batch socket, five frames for the other', async () => {
    const batched = await socket('ann', true);
    const single = await socket('ann', false);
    const ids = (await query<{ id: string }>(db, `INSERT INTO "Alert" ("userId", title) SELECT 'ann', 'n' || i FROM generate_series(1, 5) i RETURNING id`)).map((r) => r.id);
    const frame = await batched.next((m) => m.type === 'notifications');
    expect(frame.alerts.map((a: any) => a.id)).toEqual(ids);
    expect(frame.alerts.map((a: any) => a.title)).toEqual(['n1', 'n2', 'n3', 'n4', 'n5']);
    expect(frame.unread).toBe(5);
    await until(() => single.of('notification').length === 5, 5000, 'five frames');
    expect(single.of('notification').map((m) => m.alert.id)).toEqual(ids);
    expect(single.of('notifications')).toEqual([]);
    // The frame's cursor covers the whole transaction, as the last single frame's does.
    expect(frame.cursor).toBe(single.of('notification').at(-1).cursor);
    expect(batched.of('notification')).toEqual([]);
    batched.close();
    single.close();
  });

  it('a single alert still comes as notification; updates stay their own messages, in row order', async () => {
    const c = await socket('ben', true);
    const [one] = await query<{ id: string }>(db, `INSERT INTO "Alert" ("userId", title) VALUES ('ben', 'alone') RETURNING id`);
    expect((await c.next((m) => m.type === 'notification')).alert.id).toBe(one!.id);
    const pg = await import('pg');
    const w = new pg.default.Client({ connectionString: db });
    await w.connect();
    await w.query('BEGIN');
    const a = (await w.query(`INSERT INTO "Alert" ("userId", title) VALUES ('ben', 'a'), ('ben', 'b') RETURNING id`)).rows.map((r) => r.id);
    await w.query(`UPDATE "Alert" SET read = true WHERE id = $1`, [one!.id]);
    await w.query('COMMIT');
    await w.end();
    const frame = await c.next((m) => m.type === 'notifications');
    expect(frame.alerts.map((x: any) => x.id)).toEqual(a);
    const upd = await c.next((m) => m.type === 'update');
    expect(upd.alert).toMatchObject({ id: one!.id, read: true });
    const order = c.messages.filter((m) => ['notifications', 'update'].includes(m.type)).map((m) => m.type);
    // Within a transaction, rows go in insertion order (seq): the older, updated row first.
    expect(order).toEqual(['update', 'notifications']);
    c.close();
  });

  it('loses nothing: batch tabs dropped and resumed while 4 writers insert in multi-row transactions end with exactly their rows', async () => {
    const tabs = [new Tab(await tokenFor('ann'), true), new Tab(await tokenFor('ben'), true)];
    await Promise.all(tabs.map((t) => t.connect(daemon.url)));
    const before = new Set((await query<{ id: string }>(db, `SELECT id FROM "Alert"`)).map((r) => r.id));
    let stop = false;
    const writers = [0, 1, 2, 3].map(async (w) => {
      for (let i = 0; !stop; i++) {
        await query(db, `INSERT INTO "Alert" ("userId", title) SELECT CASE WHEN g % 2 = 0 THEN 'ann' ELSE 'ben' END, $1 || '-' || g FROM generate_series(1, $2::int) g`, [`w${w}.${i}`, 1 + (i % 7)]);
      }
    });
    for (let round = 0; round < 3; round++) {
      await new Promise((r) => setTimeout(r, 150));
      tabs[round % 2]!.drop();
      await new Promise((r) => setTimeout(r, 100));
      await tabs[round % 2]!.connect(daemon.url);
    }
    stop = true;
    await Promise.all(writers);
    for (const [t, user] of [[tabs[0]!, 'ann'], [tabs[1]!, 'ben']] as const) {
      const want = new Set((await query<{ id: string }>(db, `SELECT id FROM "Alert" WHERE "userId" = $1`, [user])).map((r) => r.id).filter((id) => !before.has(id)));
      await until(() => [...want].every((id) => t.ids.has(id)), 10_000, `all of ${user}'s alerts`);
      expect(t.ids).toEqual(want);
      expect(t.repeatsWithinConnection).toEqual([]);
      // Over the tab's connections (its last one may only have had a replay, which is not batched).
      expect(t.batchFrames).toBeGreaterThan(0);
      t.close();
    }
  });
});

describe('many users connected', () => {
  it('150 users online and 50 offline, one statement for all 200: each socket gets exactly its own (the read is not filtered by user above liveFilterMaxUsers)', async () => {
    const online = Array.from({ length: 150 }, (_, i) => `many${i}`);
    const offline = Array.from({ length: 50 }, (_, i) => `away${i}`);
    await query(db, `INSERT INTO "User" (id, email) SELECT u, u || '@example.test' FROM unnest($1::text[]) u`, [[...online, ...offline]]);
    const unfiltered = await startTestDaemon(db, { liveFilterMaxUsers: 100 });
    onTeardown(() => unfiltered.stop());
    const sockets = await Promise.all(online.map((u) => socket(u, true, unfiltered)));
    const rows = await query<{ id: string; userId: string }>(db, `INSERT INTO "Alert" ("userId", title) SELECT u, 'for ' || u FROM unnest($1::text[]) u RETURNING id, "userId"`, [[...online, ...offline]]);
    const want = new Map(rows.map((r) => [r.userId, r.id]));
    await Promise.all(sockets.map((s) => s.next((m) => m.type === 'notification' || m.type === 'notifications')));
    await new Promise((r) => setTimeout(r, 200));
    sockets.forEach((s, i) => {
      const got = [...s.of('notification').map((m) => m.alert), ...s.of('notifications').flatMap((m) => m.alerts)];
      expect(got.map((a: any) => a.id)).toEqual([want.get(online[i]!)]);
      expect(got[0].userId).toBe(online[i]);
      s.close();
    });
  });
});

describe('the user filter', () => {
  it('user ids that need quoting in an array literal (quotes, backslashes, commas, braces, NULL) each get exactly their own alert', async () => {
    const odd = ['we"ird', 'back\\slash', 'com,ma', '{brace}', 'sp ace', 'NULL', 'é-ü'];
    await query(db, `INSERT INTO "User" (id, email) SELECT u, md5(u) || '@example.test' FROM unnest($1::text[]) u`, [odd]);
    const sockets = await Promise.all(odd.map((u) => socket(u, false)));
    const rows = await query<{ id: string; userId: string }>(db, `INSERT INTO "Alert" ("userId", title) SELECT u, 'for ' || u FROM unnest($1::text[]) u RETURNING id, "userId"`, [odd]);
    await Promise.all(sockets.map((s) => s.next((m) => m.type === 'notification')));
    await new Promise((r) => setTimeout(r, 100));
    sockets.forEach((s, i) => {
      expect(s.of('notification').map((m) => m.alert.id)).toEqual([rows.find((r) => r.userId === odd[i])!.id]);
      s.close();
    });
  });
});
