/**
 * A subscriber filtered by types (auth `types`, `?types=`) loses an alert that is deleted and
 * re-inserted as another type in one transaction: the delete reaches it, before the re-inserted
 * row (which its filter leaves out). A plain UPDATE of the type is still not sent to it (see
 * docs/protocol.md).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from './helpers/client.js';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';

let db: string;
const fleet = daemonFleet(() => db);

beforeAll(async () => {
  db = await freshDatabase(['typed', 'polled']);
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
});
