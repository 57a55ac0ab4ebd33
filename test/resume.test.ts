/**
 * Lose nothing: every test ends by comparing the set of alert ids a client was sent with the
 * set committed for its user in the database — nothing missing, nothing foreign.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { TestClient, sleep } from './helpers/client.js';
import { startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { createUser, freshDatabase, psql, query } from './helpers/pg.js';
import { DEFAULT_LIMITS } from '../src/server/server.js';
import { HoldingProxy } from './helpers/proxy.js';
import { Tab, until } from './helpers/tab.js';

let db: string;
let dbName: string;
let daemon: TestDaemon;
const admin = () => inject('pg').adminUrl;

async function committedIds(userId: string): Promise<Set<string>> {
  return new Set((await query(db, `SELECT id FROM "Alert" WHERE "userId" = $1`, [userId])).map((r) => r.id as string));
}

async function tab(userId: string): Promise<Tab> {
  return new Tab(await tokenFor(userId)).connect(daemon.url);
}

beforeAll(async () => {
  db = await freshDatabase(['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gus', 'hank', 'ivy', 'kim', 'lou']);
  dbName = new URL(db).pathname.slice(1);
  daemon = await startTestDaemon(db);
});
afterAll(async () => {
  await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`).catch(() => {});
  await daemon?.stop();
});

describe('resume from a cursor', () => {
  it('out-of-order commits: B is delivered live while A is open; after a disconnect, resuming from B\'s cursor delivers A', async () => {
    const t = await tab('alice');
    const a = new pg.Client({ connectionString: db });
    await a.connect();
    await a.query('BEGIN');
    const idA = (await a.query(`INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'A (held open)') RETURNING id`)).rows[0].id;
    const idB = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'B') RETURNING id`))[0]!.id;
    await until(() => t.ids.has(idB), 5000, 'B live');
    const cursorAfterB = t.cursor;
    t.drop();
    await a.query('COMMIT');
    await a.end();

    await t.connect(daemon.url);
    expect(t.client!.messages[0]).toMatchObject({ type: 'ready', userId: 'alice' });
    const replayed = t.client!.of('notification').map((m) => m.alert.id);
    expect(replayed).toEqual([idA]);
    expect(t.client!.messages.at(-1)).toMatchObject({ type: 'synced', unread: 2 });
    expect(t.client!.messages.at(-1).cursor).not.toBe(cursorAfterB);
    expect(t.ids).toEqual(await committedIds('alice'));
    t.close();
  });

  it('a client dropped in the middle of 1,000 single-row inserts resumes and ends with exactly its 1,000', async () => {
    const t = await tab('bob');
    const other = await tab('carol');
    const writers = await Promise.all([1, 2, 3, 4].map(async () => {
      const c = new pg.Client({ connectionString: db });
      await c.connect();
      return c;
    }));
    const writing = Promise.all(
      writers.map(async (c, w) => {
        for (let i = 0; i < 250; i++) await c.query(`INSERT INTO "Alert" ("userId", title) VALUES ('bob', $1)`, [`burst ${w}-${i}`]);
      }),
    );
    await until(() => t.ids.size >= 300, 20_000, '300 alerts before the drop');
    t.drop();
    await writing;
    await Promise.all(writers.map((c) => c.end()));
    await t.connect(daemon.url);
    await until(() => t.ids.size >= 1000, 20_000, 'all 1000 after resume');
    expect(t.ids).toEqual(await committedIds('bob'));
    expect(t.repeatsWithinConnection).toEqual([]);
    expect(other.ids.size).toBe(0);
    t.close();
    other.close();
  });

  it('changes made while away come back as what they are: update, delete, or a new alert in its current state', async () => {
    const t = await tab('dave');
    const [k1, k2] = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('dave', 'keep'), ('dave', 'doomed') RETURNING id`)).map((r) => r.id);
    await until(() => t.ids.size === 2, 5000, 'two alerts');
    t.drop();
    await psql(db, `UPDATE "Alert" SET read = true WHERE id = '${k1}'`);
    await psql(db, `DELETE FROM "Alert" WHERE id = '${k2}'`);
    const k3 = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('dave', 'new, then read') RETURNING id`))[0]!.id;
    await psql(db, `UPDATE "Alert" SET read = true WHERE id = '${k3}'`);

    await t.connect(daemon.url);
    const got = t.client!.messages.filter((m) => ['notification', 'update', 'delete'].includes(m.type));
    expect(got.map((m) => [m.type, m.alert?.id ?? m.id, m.alert?.read])).toEqual([
      ['update', k1, true],
      ['delete', k2, undefined],
      ['notification', k3, true],
    ]);
    expect(t.client!.messages.at(-1)).toMatchObject({ type: 'synced', unread: 0 });
    t.close();
  });

  it.each([
    ['garbage', () => 'not-a-cursor', 'cursor is not one pgbell issued'],
    ['another database', (c: string) => c.replace(/^1\.[^.]+\./, '1.00000000.'), 'cursor is from another database'],
    ['from the future', (c: string) => c.replace(/^(1\.[^.]+\.)[^.]+/, '$1zzzzzzzz'), 'cursor is ahead of this database'],
  ])('a cursor that is %s → ready, reset, synced with a fresh cursor; then live as usual', async (_l, mangle, reason) => {
    const first = await tab('erin');
    const cursor = first.cursor!;
    first.close();
    const c = await TestClient.connect(daemon.url);
    c.send({ type: 'auth', token: await tokenFor('erin'), after: mangle(cursor) });
    await c.next((m) => m.type === 'synced');
    expect(c.messages.map((m) => m.type)).toEqual(['ready', 'reset', 'synced']);
    expect(c.messages[1]).toEqual({ type: 'reset', reason });
    const id = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('erin', 'after reset') RETURNING id`))[0]!.id;
    expect((await c.next((m) => m.type === 'notification')).alert.id).toBe(id);
    c.close();
  });

  it('a cursor from a clone of this database (CREATE DATABASE … TEMPLATE) is another database there: reset, not a silent gap', async () => {
    const first = await tab('erin');
    const cursor = first.cursor!;
    first.close();
    const cloneName = `${dbName}_clone`;
    // A template must have no other sessions: the daemon's pool is connected, so clone a
    // fresh copy of the run's template instead (it is what this file's database was cloned from).
    await query(admin(), `CREATE DATABASE ${cloneName} TEMPLATE ${inject('pg').template}`);
    const cloneUrl = db.replace(new RegExp(`/${dbName}(\\?|$)`), `/${cloneName}$1`);
    const onClone = await startTestDaemon(cloneUrl);
    try {
      const c = await TestClient.connect(onClone.url);
      c.send({ type: 'auth', token: await tokenFor('erin'), after: cursor });
      await c.next((m) => m.type === 'synced');
      expect(c.messages[1]).toEqual({ type: 'reset', reason: 'cursor is from another database' });
      c.close();
    } finally {
      await onClone.stop();
      await query(admin(), `DROP DATABASE ${cloneName} WITH (FORCE)`);
    }
  });

  it('a replay paused for a congested socket goes on with an alert it sent as new, changed meanwhile, as an update: never a second notification on the connection', async () => {
    // A small bound, so the 20 MB backlog below pauses the replay whatever the kernel buffers.
    const small = await startTestDaemon(db, { limits: { ...DEFAULT_LIMITS, maxBufferedBytes: 64 * 1024 } });
    try {
      await createUser(db, 'pia');
      const t = await new Tab(await tokenFor('pia')).connect(small.url);
      t.drop();
      // Inserted, then changed before the replay reads it: no row is stamped with its insert's
      // transaction any more, so the replay's record of what it sent does not name that one.
      const a = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('pia', 'first') RETURNING id`))[0]!.id as string;
      await query(db, `UPDATE "Alert" SET read = true WHERE id = $1`, [a]);
      const big = 'x'.repeat(200_000);
      for (let i = 0; i < 100; i++) await query(db, `INSERT INTO "Alert" ("userId", title, message) VALUES ('pia', $1, $2)`, [`big ${i}`, big]);
      // A client that does not read: the replay sends the alert, then pauses for the socket to drain.
      const c = await TestClient.connect(small.url);
      const socket = (c.ws as unknown as { _socket: import('node:net').Socket })._socket;
      socket.pause();
      c.send({ type: 'auth', token: await tokenFor('pia'), after: t.cursor });
      await until(() => small.logs.messages().some((m) => m.startsWith('paused a replay to user pia until its socket drains')), 20_000, 'the paused replay');
      // The alert changes again while the replay waits; then the client reads.
      await query(db, `UPDATE "Alert" SET title = 'changed' WHERE id = $1`, [a]);
      socket.resume();
      await c.next((m) => m.type === 'synced', 30_000);
      const ofA = c.messages.filter((m) => (m.alert?.id ?? m.id) === a).map((m) => [m.type, m.alert?.title]);
      expect(ofA).toEqual([
        ['notification', 'first'],
        ['update', 'changed'],
      ]);
      expect(new Set(c.alerts().map((x) => x.id)).size).toBe(c.alerts().length);
      expect(c.alerts().length).toBe(101);
      c.close();
    } finally {
      await small.stop();
    }
  }, 60_000);

  it('a replay paused for a congested socket after more than 1,024 transactions goes on without sending the oldest again', async () => {
    // 12 MiB of unsent output before it pauses: at least 1,200 of the 2,500 transactions' 10 kB
    // alerts were sent, more than a live cursor keeps in memory (MAX_MEMORY_IDS).
    const small = await startTestDaemon(db, { limits: { ...DEFAULT_LIMITS, maxBufferedBytes: 12 << 20 } });
    try {
      await createUser(db, 'oli');
      const t = await new Tab(await tokenFor('oli')).connect(small.url);
      t.drop();
      const writer = new pg.Client({ connectionString: db });
      await writer.connect();
      const message = 'x'.repeat(10_000);
      for (let i = 0; i < 2500; i++) await writer.query(`INSERT INTO "Alert" ("userId", title, message) VALUES ('oli', $1, $2)`, [`n${i}`, message]);
      await writer.end();
      const c = await TestClient.connect(small.url);
      const socket = (c.ws as unknown as { _socket: import('node:net').Socket })._socket;
      socket.pause();
      c.send({ type: 'auth', token: await tokenFor('oli'), after: t.cursor });
      await until(() => small.logs.messages().some((m) => m.startsWith('paused a replay to user oli until its socket drains')), 30_000, 'the paused replay');
      const paused = small.logs.lines.find((l) => String(l.msg).startsWith('paused a replay to user oli'))!;
      expect(paused.replayed as number).toBeGreaterThan(1024);
      socket.resume();
      await c.next((m) => m.type === 'synced', 60_000);
      const ids = c.alerts().map((a) => a.id);
      expect(new Set(ids).size).toBe(ids.length);
      expect(new Set(ids)).toEqual(await committedIds('oli'));
      expect(c.of('update')).toEqual([]);
      c.close();
    } finally {
      await small.stop();
    }
  }, 90_000);

  it('more changes since the cursor than MAX_REPLAY → reset instead of a flood', async () => {
    const small = await startTestDaemon(db, { maxReplay: 5 });
    try {
      const t = await new Tab(await tokenFor('frank')).connect(small.url);
      t.drop();
      await query(db, `INSERT INTO "Alert" ("userId", title) SELECT 'frank', 'n' || i FROM generate_series(1, 6) i`);
      await t.connect(small.url);
      expect(t.client!.messages.map((m) => m.type)).toEqual(['ready', 'reset', 'synced']);
      expect(t.client!.messages[1].reason).toBe('more than 5 changes since the cursor');
      t.close();
    } finally {
      await small.stop();
    }
  });
});

describe('live state', () => {
  it('an UPDATE typed in psql reaches both tabs of the user as an update carrying the new unread count', async () => {
    const [t1, t2, b] = [await tab('gus'), await tab('gus'), await tab('alice')];
    const ids = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('gus', 'one'), ('gus', 'two') RETURNING id`)).map((r) => r.id);
    await until(() => t1.ids.size === 2 && t2.ids.size === 2, 5000, 'both alerts in both tabs');
    expect(t1.client!.of('notification').map((m) => m.unread)).toEqual([2, 2]);
    await psql(db, `UPDATE "Alert" SET read = true WHERE id = '${ids[0]}'`);
    for (const t of [t1, t2]) {
      const u = await t.client!.next((m) => m.type === 'update');
      expect(u).toMatchObject({ type: 'update', alert: { id: ids[0], read: true, title: 'one' }, unread: 1 });
    }
    await sleep(100);
    expect(b.updates).toEqual([]);
    for (const t of [t1, t2, b]) t.close();
  });

  it('{"type":"read"} over one socket updates every tab; ids of another user are left alone', async () => {
    await query(db, `UPDATE "Alert" SET read = true WHERE "userId" IN ('carol', 'alice')`);
    const [t1, t2] = [await tab('carol'), await tab('carol')];
    const ids = (await query(db, `INSERT INTO "Alert" ("userId", title) SELECT 'carol', 'r' || i FROM generate_series(1, 3) i RETURNING id`)).map((r) => r.id);
    const foreign = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'not carol''s') RETURNING id`))[0]!.id;
    await until(() => t1.ids.size === 3 && t2.ids.size === 3, 5000, 'three alerts');

    t1.client!.send({ type: 'read', ids: [ids[0], foreign] });
    for (const t of [t1, t2]) expect(await t.client!.next((m) => m.type === 'update')).toMatchObject({ alert: { id: ids[0], read: true }, unread: 2 });
    expect((await query(db, `SELECT read FROM "Alert" WHERE id = $1`, [foreign]))[0]!.read).toBe(false);

    t2.client!.send({ type: 'read', all: true });
    await until(() => t1.updates.length === 3 && t2.updates.length === 3, 5000, 'updates for the other two');
    expect(t1.updates.at(-1).unread).toBe(0);
    expect(new Set(t1.updates.map((u) => u.alert.id))).toEqual(new Set(ids));

    t1.client!.send({ type: 'read', ids: [] });
    expect(await t1.client!.next((m) => m.type === 'error')).toEqual({ type: 'error', code: 'bad_message', message: 'invalid "read" message: ids: ids must not be empty' });
    t1.client!.send({ type: 'read', ids: ['x'], all: true });
    await until(() => t1.client!.of('error').length === 2, 5000, 'second error');
    expect(t1.client!.of('error')[1].message).toBe('invalid "read" message: send either "ids" or "all": true');
    t1.close();
    t2.close();
  });

  it('a DELETE reaches every tab as {"type":"delete"} with the new unread count', async () => {
    const [t1, t2] = [await tab('erin'), await tab('erin')];
    const id = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('erin', 'to be deleted') RETURNING id`))[0]!.id;
    await until(() => t1.ids.has(id) && t2.ids.has(id), 5000, 'the alert');
    const unreadBefore = t1.client!.of('notification').at(-1).unread;
    await psql(db, `DELETE FROM "Alert" WHERE id = '${id}'`);
    for (const t of [t1, t2]) {
      const d = await t.client!.next((m) => m.type === 'delete');
      expect(d).toEqual({ type: 'delete', id, unread: unreadBefore - 1, unseen: unreadBefore - 1, byType: unreadBefore - 1 === 0 ? {} : { general: { unread: unreadBefore - 1, unseen: unreadBefore - 1 } }, cursor: expect.any(String) });
    }
    t1.close();
    t2.close();
  });
});

describe('category filter', () => {
  it('{"type":"subscribe","types":[…]} sends only those types, with the unread count of those types; [] means all again', async () => {
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('kim', 'billing', 'b0'), ('kim', 'general', 'g0')`);
    const t = await tab('kim');
    expect(t.client!.of('synced')[0].unread).toBe(2);
    t.client!.send({ type: 'subscribe', types: ['billing'] });
    expect(await t.client!.next((m) => m.type === 'subscribed')).toEqual({ type: 'subscribed', types: ['billing'], unread: 1, unseen: 1, byType: { billing: { unread: 1, unseen: 1 } } });
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('kim', 'general', 'g1'), ('kim', 'billing', 'b1')`);
    const n = await t.client!.next((m) => m.type === 'notification');
    expect(n).toMatchObject({ alert: { title: 'b1', type: 'billing' }, unread: 2 });
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('kim', 'billing', 'b2')`);
    await t.client!.count('notification', 2);
    expect(t.client!.alerts().map((a) => a.title)).toEqual(['b1', 'b2']);

    t.client!.send({ type: 'subscribe', types: [] });
    await until(() => t.client!.of('subscribed').length === 2, 5000, 'second subscribed');
    expect(t.client!.of('subscribed')[1]).toEqual({ type: 'subscribed', types: [], unread: 5, unseen: 5, byType: { billing: { unread: 3, unseen: 3 }, general: { unread: 2, unseen: 2 } } });
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('kim', 'general', 'g2')`);
    await t.client!.count('notification', 3);
    expect(t.client!.alerts().at(-1)).toMatchObject({ title: 'g2' });

    // A resume can carry the filter too: only the billing alert written while away is replayed.
    const cursor = t.cursor!;
    t.drop();
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('kim', 'general', 'g3'), ('kim', 'billing', 'b3')`);
    const c = await TestClient.connect(daemon.url);
    c.send({ type: 'auth', token: await tokenFor('kim'), after: cursor, types: ['billing'] });
    await c.next((m) => m.type === 'synced');
    expect(c.alerts().map((a) => a.title)).toEqual(['b3']);
    expect(c.of('synced')[0].unread).toBe(4);
    c.close();
  });
});

describe('writers never wait on each other', () => {
  it('two transactions inserting for the same 100 users in opposite orders both commit, and every user gets both', async () => {
    const users = Array.from({ length: 100 }, (_, i) => `w${i}`);
    await query(db, `INSERT INTO "User" (id, email) SELECT u, u || '@example.test' FROM unnest($1::text[]) u`, [users]);
    const watched = [users[0]!, users[42]!, users[99]!];
    const tabs = await Promise.all(watched.map((u) => tab(u)));
    const [c1, c2] = [new pg.Client({ connectionString: db }), new pg.Client({ connectionString: db })];
    await Promise.all([c1.connect(), c2.connect()]);
    await Promise.all([c1.query('BEGIN'), c2.query('BEGIN')]);
    // Interleave: c1 goes up, c2 goes down, one statement each at a time.
    await Promise.all([
      (async () => {
        for (const u of users) await c1.query(`INSERT INTO "Alert" ("userId", title) VALUES ($1, 'up')`, [u]);
      })(),
      (async () => {
        for (const u of [...users].reverse()) await c2.query(`INSERT INTO "Alert" ("userId", title) VALUES ($1, 'down')`, [u]);
      })(),
    ]);
    await Promise.all([c1.query('COMMIT'), c2.query('COMMIT')]);
    await Promise.all([c1.end(), c2.end()]);
    expect((await query(db, `SELECT count(*)::int AS n FROM "Alert" WHERE "userId" LIKE 'w%'`))[0]!.n).toBe(200);
    for (const [i, t] of tabs.entries()) {
      await until(() => t.ids.size === 2, 5000, `both alerts for ${watched[i]}`);
      expect(t.ids).toEqual(await committedIds(watched[i]!));
      t.close();
    }
  });
});

describe('bulk', () => {
  it('one statement inserting 10,000 alerts for 200 users: each user\'s socket gets exactly its 50', async () => {
    const users = Array.from({ length: 200 }, (_, i) => `bulk${i}`);
    await query(db, `INSERT INTO "User" (id, email) SELECT u, u || '@example.test' FROM unnest($1::text[]) u`, [users]);
    const tabs = await Promise.all(users.map((u) => tab(u)));
    await query(db, `INSERT INTO "Alert" ("userId", title) SELECT 'bulk' || (i % 200), 'bulk ' || i FROM generate_series(0, 9999) i`);
    await until(() => tabs.every((t) => t.ids.size >= 50), 30_000, '50 alerts on every socket');
    await sleep(100);
    const rows = await query(db, `SELECT id, "userId" FROM "Alert" WHERE "userId" LIKE 'bulk%'`);
    expect(rows).toHaveLength(10_000);
    for (const [i, t] of tabs.entries()) {
      expect(t.ids).toEqual(new Set(rows.filter((r) => r.userId === users[i]).map((r) => r.id)));
      t.close();
    }
  });
});

describe('listener loss', () => {
  it('the listener backend is killed while 50 alerts are written: the connected client still gets all 50, once', async () => {
    const t = await tab('hank');
    const before = t.ids.size;
    const writer = new pg.Client({ connectionString: db });
    await writer.connect();
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      if (i === 15) {
        // Keep the listener out for a moment so some commits certainly happen while it is away.
        await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS false`);
        await query(admin(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgbell-listener' AND datname = $1`, [dbName]);
      }
      if (i === 35) await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`);
      ids.push((await writer.query(`INSERT INTO "Alert" ("userId", title) VALUES ('hank', $1) RETURNING id`, [`k${i}`])).rows[0].id);
      await sleep(20);
    }
    await writer.end();
    await until(() => t.ids.size >= before + 50, 20_000, 'all 50 after the listener came back');
    expect(t.ids).toEqual(await committedIds('hank'));
    expect(t.repeatsWithinConnection).toEqual([]);
    expect(daemon.logs.messages()).toContain('catching up after the listener reconnected');
    t.close();
  });

  it('a socket whose first sync is in flight when the listener comes back is caught up too', async () => {
    const proxy = await HoldingProxy.start(db);
    const d = await startTestDaemon(proxy.url(db), { listenDatabaseUrl: db });
    try {
      const first = await new Tab(await tokenFor('lou')).connect(d.url);
      first.drop();
      // The resume's read runs (its snapshot is taken) but its answer is held back.
      const held = proxy.holdAfter('pgbell_changes_since\0');
      const resumed = first.connect(d.url);
      await held;
      // Meanwhile the listener is lost (kept out for a moment), and a transaction commits while
      // it is away, from a connection opened before.
      const writer = new pg.Client({ connectionString: db });
      await writer.connect();
      await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS false`);
      await query(admin(), `SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = 'pgbell-listener' AND datname = $1`, [dbName]);
      const lost = (await writer.query(`INSERT INTO "Alert" ("userId", title) VALUES ('lou', 'while the listener was away') RETURNING id`)).rows[0].id as string;
      await writer.end();
      await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`);
      await until(() => d.logs.messages().includes('catching up after the listener reconnected'), 10_000, 'the listener back');
      proxy.release();
      await resumed;
      const after = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('lou', 'after') RETURNING id`))[0]!.id as string;
      await until(() => first.ids.has(after), 5000, 'the next alert');
      await until(() => first.ids.has(lost), 5000, 'the alert committed while the listener was away');
      expect(first.repeatsWithinConnection).toEqual([]);
      first.close();
    } finally {
      await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`);
      await d.stop();
      await proxy.close();
    }
  }, 30_000);

  it('catch-up reads in batches of users, not one query per socket', async () => {
    const batched = await startTestDaemon(db, { syncBatchUsers: 2 });
    try {
      const users = ['alice', 'bob', 'carol', 'dave', 'erin'];
      const tabs = await Promise.all(users.map(async (u) => new Tab(await tokenFor(u)).connect(batched.url)));
      const reads = () => batched.logs.lines.filter((l) => l.msg === 'reading changes since cursors' && l.catchUp === true);
      const writer = new pg.Client({ connectionString: db });
      await writer.connect();
      await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS false`);
      await query(admin(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgbell-listener' AND datname = $1`, [dbName]);
      // Written while the listener is away: only the catch-up can deliver these.
      const missed = (await writer.query(`INSERT INTO "Alert" ("userId", title) SELECT u, 'while away' FROM unnest($1::text[]) u RETURNING id, "userId"`, [users])).rows;
      await writer.end();
      await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`);
      await until(() => missed.every((r) => tabs[users.indexOf(r.userId)]!.ids.has(r.id)), 20_000, 'the missed alerts');
      expect(reads().map((l) => l.users)).toEqual([2, 2, 1]);
      for (const t of tabs) t.close();
    } finally {
      await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`);
      await batched.stop();
    }
  });

  it('a forged payload with an impossible horizon is ignored: a held-open transaction is still resumed', async () => {
    const t = await tab('ivy');
    const a = new pg.Client({ connectionString: db });
    await a.connect();
    await a.query('BEGIN');
    const idA = (await a.query(`INSERT INTO "Alert" ("userId", title) VALUES ('ivy', 'held') RETURNING id`)).rows[0].id;
    await psql(db, `NOTIFY pgbell, '{"txid":"3","xmin":"999999999999"}'`);
    const idB = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('ivy', 'after forgery') RETURNING id`))[0]!.id;
    await until(() => t.ids.has(idB), 5000, 'B');
    t.drop();
    await a.query('COMMIT');
    await a.end();
    await t.connect(daemon.url);
    expect(t.ids.has(idA)).toBe(true);
    expect(t.ids).toEqual(await committedIds('ivy'));
    t.close();
  });
});
