/** The core promise: a committed row reaches every socket of its user and no one else's. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from './helpers/client.js';
import { startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, psql, query } from './helpers/pg.js';

let db: string;
let daemon: TestDaemon;

beforeAll(async () => {
  db = await freshDatabase(['alice', 'bob']);
  daemon = await startTestDaemon(db);
});
afterAll(async () => {
  await daemon?.stop();
});

describe('delivery', () => {
  it('an INSERT run by the psql binary reaches both sockets of its user and not another user\'s socket', async () => {
    const a1 = await TestClient.ready(daemon.url, await tokenFor('alice', { email: 'alice@example.test' }));
    const a2 = await TestClient.ready(daemon.url, await tokenFor('alice'));
    const b1 = await TestClient.ready(daemon.url, await tokenFor('bob'));

    await psql(db, `INSERT INTO "Alert" ("userId", type, title, message, link, data) VALUES ('alice', 'billing', 'Invoice ready', 'March invoice', '/invoices/3', '{"amount": 42, "tags": ["a"]}')`);
    const [n1] = await a1.count('notification', 1);
    const [n2] = await a2.count('notification', 1);
    expect(n1).toEqual(n2);
    const row = (await query(db, `SELECT id, "createdAt" FROM "Alert" WHERE "userId" = 'alice'`))[0]!;
    expect(n1.alert).toEqual({
      id: row.id,
      userId: 'alice',
      type: 'billing',
      title: 'Invoice ready',
      message: 'March invoice',
      link: '/invoices/3',
      data: { amount: 42, tags: ['a'] },
      read: false,
      seen: false,
      archived: false,
      createdAt: (row.createdAt as Date).toISOString(),
    });

    // Deliveries go out in commit order: once bob has his later alert, alice's alert would
    // have reached him before it if it were going to.
    await psql(db, `INSERT INTO "Alert" ("userId", title) VALUES ('bob', 'for bob')`);
    await b1.count('notification', 1);
    expect(b1.alerts().map((a) => a.title)).toEqual(['for bob']);
    expect(a1.alerts().map((a) => a.title)).toEqual(['Invoice ready']);
    expect(a2.alerts().map((a) => a.title)).toEqual(['Invoice ready']);

    expect(daemon.logs.messages()).toContain('User alice (alice@example.test) authenticated via WebSocket');
    expect(daemon.logs.messages()).toContain('Broadcasted notification to user alice (2 connections)');
    for (const c of [a1, a2, b1]) c.close();
  });

  it('a rolled-back insert delivers nothing', async () => {
    const a = await TestClient.ready(daemon.url, await tokenFor('alice'));
    await psql(db, `BEGIN; INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'rolled back'); ROLLBACK;`);
    await psql(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'committed')`);
    await a.count('notification', 1);
    expect(a.alerts().map((x) => x.title)).toEqual(['committed']);
    a.close();
  });

  it.each([
    ['20 kB', 20 * 1024],
    ['1 MB', 1024 * 1024],
  ])('a %s alert is inserted without error and delivered whole', async (_label, size) => {
    const a = await TestClient.ready(daemon.url, await tokenFor('alice'));
    const message = 'x'.repeat(size - 7) + 'the-end';
    const data = { blob: 'é'.repeat(size / 4) };
    const [row] = await query(db, `INSERT INTO "Alert" ("userId", title, message, data) VALUES ('alice', 'big', $1, $2) RETURNING id`, [message, data]);
    const [n] = await a.count('notification', 1);
    expect(n.alert.id).toBe(row!.id);
    expect(n.alert.message.length).toBe(message.length);
    expect(n.alert.message).toBe(message);
    expect(n.alert.data).toEqual(data);
    a.close();
  });

  it('every row of a multi-row statement and of a multi-statement transaction arrives, in order', async () => {
    const a = await TestClient.ready(daemon.url, await tokenFor('alice'));
    const b = await TestClient.ready(daemon.url, await tokenFor('bob'));
    await psql(
      db,
      `BEGIN;
       INSERT INTO "Alert" ("userId", title) SELECT CASE WHEN i % 2 = 0 THEN 'alice' ELSE 'bob' END, 'n' || i FROM generate_series(1, 200) i;
       INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'last');
       COMMIT;`,
    );
    await a.count('notification', 101);
    await b.count('notification', 100);
    expect(a.alerts().every((x) => x.userId === 'alice')).toBe(true);
    expect(b.alerts().every((x) => x.userId === 'bob')).toBe(true);
    expect(a.alerts().at(-1).title).toBe('last');
    expect(new Set(a.alerts().map((x) => x.id)).size).toBe(101);
    a.close();
    b.close();
  });

  it('a garbage payload sent by hand on the channel is logged and dropped; the daemon stays up', async () => {
    const a = await TestClient.ready(daemon.url, await tokenFor('alice'));
    await psql(db, `SELECT pg_notify('pgbell', 'not json'); SELECT pg_notify('pgbell', '{"txid":"1; drop table"}'); NOTIFY pgbell;`);
    await psql(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'after garbage')`);
    await a.count('notification', 1);
    expect(a.alerts().map((x) => x.title)).toEqual(['after garbage']);
    const dropped = daemon.logs.lines.filter((l) => String(l.msg).startsWith('dropped a notification'));
    expect(dropped.map((l) => l.payload)).toEqual(expect.arrayContaining(['not json', '{"txid":"1; drop table"}', '']));
    a.close();
  });

  it('a socket that is still authenticating gets nothing; once ready it gets the next alert', async () => {
    const c = await TestClient.connect(daemon.url);
    await psql(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'before auth')`);
    c.send({ type: 'auth', token: await tokenFor('alice') });
    await c.next((m) => m.type === 'ready');
    await psql(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'after auth')`);
    await c.count('notification', 1);
    expect(c.alerts().map((x) => x.title)).toEqual(['after auth']);
    c.close();
  });
});
