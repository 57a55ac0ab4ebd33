/**
 * A subscriber filtered by types (auth `types`, `?types=`) loses an alert that leaves its
 * filter: deleted and re-inserted as another type in one transaction (the delete reaches it,
 * before the re-inserted row, which its filter leaves out), or moved to another type by an
 * UPDATE, or (without a filter) moved into a muted type: such an update reaches it as a delete,
 * live, on resume and on `?after=`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from './helpers/client.js';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';

let db: string;
const fleet = daemonFleet(() => db);

beforeAll(async () => {
  db = await freshDatabase(['typed', 'polled', 'moved', 'resumed', 'mover', 'muter']);
});
afterAll(() => fleet.stopAll());

const get = async (base: string, path: string, token: string) => {
  const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as any };
};

describe('types filter and lastWins', () => {
  it('live: a delete and re-insert of an alert of a subscribed type as another type removes it', async () => {
    const d = await fleet.start();
    const token = await tokenFor('typed');
    const c = await TestClient.connect(d.url);
    c.send({ type: 'auth', token, types: ['a'] });
    await c.next((m) => m.type === 'synced');
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('t1', 'typed', 'a', 'first')`);
    await c.next((m) => (m.type === 'notification' && m.alert.id === 't1') || (m.type === 'notifications' && m.alerts.some((a: any) => a.id === 't1')));
    await query(db, `BEGIN; DELETE FROM "Alert" WHERE id = 't1'; INSERT INTO "Alert" (id, "userId", type, title) VALUES ('t1', 'typed', 'b', 'now b'); COMMIT;`);
    // A marker of the subscribed type, after: everything before it has been delivered.
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('t2', 'typed', 'a', 'marker')`);
    await c.next((m) => (m.type === 'notification' && m.alert.id === 't2') || (m.type === 'notifications' && m.alerts.some((a: any) => a.id === 't2')));
    c.close();
    // The client, subscribed to type a, still shows t1 as an alert of type a, which no longer exists.
    const told = c.messages.some((m) => (m.type === 'delete' && m.id === 't1') || (m.type === 'deletes' && m.ids?.includes('t1')));
    expect(told).toBe(true);
  });

  it('?after=&types=: the same change removes it', async () => {
    const d = await fleet.start();
    const token = await tokenFor('polled');
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('p1', 'polled', 'a', 'first')`);
    const start = await get(d.http, '/alerts?types=a', token);
    expect(start.body.alerts.map((a: any) => a.id)).toEqual(['p1']);
    await query(db, `BEGIN; DELETE FROM "Alert" WHERE id = 'p1'; INSERT INTO "Alert" (id, "userId", type, title) VALUES ('p1', 'polled', 'b', 'now b'); COMMIT;`);
    const r = await get(d.http, `/alerts?types=a&after=${encodeURIComponent(start.body.cursor)}`, token);
    expect(r.status).toBe(200);
    // A fresh GET /alerts?types=a no longer lists p1; the poll must say so.
    expect((await get(d.http, '/alerts?types=a', token)).body.alerts).toEqual([]);
    expect(r.body.deleted).toContain('p1');
  });

  const deleted = (c: TestClient, id: string) => c.messages.some((m) => (m.type === 'delete' && m.id === id) || (m.type === 'deletes' && m.ids?.includes(id)));
  const arrived = (id: string) => (m: any) => (m.type === 'notification' && m.alert.id === id) || (m.type === 'notifications' && m.alerts.some((a: any) => a.id === id));

  it('live: an UPDATE moving an alert out of the filter removes it; one of a type the socket never had is a harmless delete', async () => {
    const d = await fleet.start();
    const c = await TestClient.connect(d.url);
    c.send({ type: 'auth', token: await tokenFor('moved'), types: ['a'] });
    await c.next((m) => m.type === 'synced');
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('m1', 'moved', 'a', 'first')`);
    await c.next(arrived('m1'));
    await query(db, `UPDATE "Alert" SET type = 'b' WHERE id = 'm1'`);
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('m2', 'moved', 'a', 'marker')`);
    await c.next(arrived('m2'));
    expect(deleted(c, 'm1')).toBe(true);
    // Its counts are of type a: m2 only.
    expect(c.messages.at(-1).unread).toBe(1);
    // Moved back: it is the socket's again, as an update.
    await query(db, `UPDATE "Alert" SET type = 'a' WHERE id = 'm1'`);
    await c.next((m) => m.type === 'update' && m.alert.id === 'm1' && m.alert.type === 'a');
    c.close();
  });

  it('resume: an UPDATE that moved an alert out of the filter while the socket was away removes it', async () => {
    const d = await fleet.start();
    const token = await tokenFor('resumed');
    const c = await TestClient.connect(d.url);
    c.send({ type: 'auth', token, types: ['a'] });
    await c.next((m) => m.type === 'synced');
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('r1', 'resumed', 'a', 'first')`);
    const got = await c.next(arrived('r1'));
    c.close();
    await query(db, `UPDATE "Alert" SET type = 'b' WHERE id = 'r1'`);
    const again = await TestClient.connect(d.url);
    again.send({ type: 'auth', token, types: ['a'], after: got.cursor });
    const synced = await again.next((m) => m.type === 'synced');
    expect(deleted(again, 'r1')).toBe(true);
    expect(synced.unread).toBe(0);
    again.close();
  });

  it('?after=&types=: an UPDATE of the type is in `deleted`', async () => {
    const d = await fleet.start();
    const token = await tokenFor('mover');
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('u1', 'mover', 'a', 'first')`);
    const start = await get(d.http, '/alerts?types=a', token);
    expect(start.body.alerts.map((a: any) => a.id)).toEqual(['u1']);
    await query(db, `UPDATE "Alert" SET type = 'b' WHERE id = 'u1'`);
    const r = await get(d.http, `/alerts?types=a&after=${encodeURIComponent(start.body.cursor)}`, token);
    expect(r.body.deleted).toEqual(['u1']);
    expect(r.body.alerts).toEqual([]);
  });

  it('no filter: an UPDATE moving an alert into a muted type removes it, live', async () => {
    const d = await fleet.start();
    const c = await TestClient.connect(d.url);
    c.send({ type: 'auth', token: await tokenFor('muter') });
    await c.next((m) => m.type === 'synced');
    await query(db, `SELECT pgbell.set_muted('muter', ARRAY['quiet'])`);
    await c.next((m) => m.type === 'preferences');
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('q1', 'muter', 'loud', 'first')`);
    await c.next(arrived('q1'));
    await query(db, `UPDATE "Alert" SET type = 'quiet' WHERE id = 'q1'`);
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('q2', 'muter', 'loud', 'marker')`);
    await c.next(arrived('q2'));
    expect(deleted(c, 'q1')).toBe(true);
    expect(c.messages.some((m) => m.type === 'update' && m.alert?.id === 'q1')).toBe(false);
    c.close();
  });
});
