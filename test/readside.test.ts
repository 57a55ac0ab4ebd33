/**
 * What a client can ask of the read side, and what it cannot take from live delivery: /alerts
 * has database connections of its own, `?after=` answers one bounded page at a time, and
 * requests, streams and new sockets are limited per user and per address.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPLAY_PAGE_ROWS } from '../src/server/alerts.js';
import { TestClient } from './helpers/client.js';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let db: string;
const fleet = daemonFleet(() => db);

beforeAll(async () => {
  db = await freshDatabase(['reader', 'other', 'pager', 'limited', 'free']);
});
afterAll(() => fleet.stopAll());

const get = async (base: string, path: string, token: string, headers: Record<string, string> = {}) => {
  const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}`, ...headers } });
  return { status: res.status, headers: res.headers, body: (await res.json()) as any };
};

describe('live delivery keeps its connections', () => {
  it('/alerts requests that hang on the database do not hold up another user\'s live alerts', async () => {
    const d = await fleet.start();
    const tab = await new Tab(await tokenFor('other')).connect(d.url);
    // Every /alerts request reads revocations first: with that table locked, each one waits
    // on the database, holding a connection.
    const holder = new pg.Client({ connectionString: db });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE pgbell.pgbell_revocation IN ACCESS EXCLUSIVE MODE');
      const token = await tokenFor('reader');
      const hanging = Array.from({ length: 12 }, () => fetch(`${d.http}/alerts`, { headers: { authorization: `Bearer ${token}` } }).catch(() => null));
      await new Promise((r) => setTimeout(r, 300));
      const [row] = await query<{ id: string }>(db, `INSERT INTO "Alert" ("userId", title) VALUES ('other', 'live while the read side waits') RETURNING id`);
      await until(() => tab.ids.has(row!.id), 10_000, 'the live alert');
      await holder.query('ROLLBACK');
      for (const r of await Promise.all(hanging)) expect(r?.status).toBe(200);
    } finally {
      await holder.end();
      tab.close();
    }
  }, 30_000);
});

describe('?after= pages', () => {
  it(`answers at most ${REPLAY_PAGE_ROWS} changes with more: true, and the pages together are everything once`, async () => {
    const d = await fleet.start();
    const token = await tokenFor('pager');
    const start = await get(d.http, '/alerts', token);
    // 1,200 transactions of one alert each, then one transaction of 700 (never split).
    await query(db, `DO $$ BEGIN FOR i IN 1..1200 LOOP INSERT INTO "Alert" ("userId", title) VALUES ('pager', 'one ' || i); COMMIT; END LOOP; END $$`);
    await query(db, `INSERT INTO "Alert" ("userId", title) SELECT 'pager', 'bulk ' || g FROM generate_series(1, 700) g`);
    const want = new Set((await query<{ id: string }>(db, `SELECT id FROM "Alert" WHERE "userId" = 'pager'`)).map((r) => r.id));
    const got: string[] = [];
    let cursor = start.body.cursor as string;
    const sizes: number[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await get(d.http, `/alerts?after=${encodeURIComponent(cursor)}`, token);
      expect(r.status).toBe(200);
      sizes.push(r.body.alerts.length);
      got.push(...r.body.alerts.map((a: any) => a.id));
      cursor = r.body.cursor;
      if (!r.body.more) break;
    }
    expect(sizes.slice(0, 2)).toEqual([REPLAY_PAGE_ROWS, REPLAY_PAGE_ROWS]);
    expect(Math.max(...sizes)).toBe(700); // the one transaction, whole
    expect(got.length).toBe(want.size);
    expect(new Set(got)).toEqual(want);
    const after = await get(d.http, `/alerts?after=${encodeURIComponent(cursor)}`, token);
    expect(after.body).toMatchObject({ alerts: [], deleted: [], more: false, unread: 1900 });
  }, 60_000);

  it('bounds a page\'s bytes too: large alerts come a few transactions at a time', async () => {
    const d = await fleet.start();
    const token = await tokenFor('pager');
    const start = await get(d.http, '/alerts', token);
    await query(db, `DO $$ BEGIN FOR i IN 1..30 LOOP INSERT INTO "Alert" ("userId", title, data) VALUES ('pager', 'big ' || i, jsonb_build_object('blob', repeat('x', 100000))); COMMIT; END LOOP; END $$`);
    let cursor = start.body.cursor as string;
    let total = 0;
    let pages = 0;
    for (;;) {
      const res = await fetch(`${d.http}/alerts?after=${encodeURIComponent(cursor)}`, { headers: { authorization: `Bearer ${token}` } });
      const text = await res.text();
      expect(text.length).toBeLessThan(1.2 * 1024 * 1024);
      const body = JSON.parse(text);
      total += body.alerts.length;
      pages++;
      cursor = body.cursor;
      if (!body.more) break;
    }
    expect(total).toBe(30);
    expect(pages).toBeGreaterThanOrEqual(3);
  }, 60_000);
});

describe('per-user and per-address limits', () => {
  it('a user over USER_RATE_LIMIT gets 429 with Retry-After on /alerts and 4429 on a new socket; other users do not', async () => {
    const d = await fleet.start({ limits: { userRateLimit: 5, rateWindowMs: 60_000 } });
    const token = await tokenFor('limited');
    for (let i = 0; i < 5; i++) expect((await get(d.http, '/alerts', token)).status).toBe(200);
    const refused = await get(d.http, '/alerts', token);
    expect(refused.status).toBe(429);
    expect(refused.body.error).toBe('rate_limited');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    const c = await TestClient.connect(d.url);
    c.send({ type: 'auth', token });
    expect((await c.closed).code).toBe(4429);
    expect((await get(d.http, '/alerts', await tokenFor('free'))).status).toBe(200);
    await new Tab(await tokenFor('free')).connect(d.url).then((t) => t.close());
  });

  it('an address over ADDRESS_RATE_LIMIT gets 429 whoever it signs in as (behind a trusted proxy)', async () => {
    const d = await fleet.start({ trustProxyHops: 1, limits: { addressRateLimit: 4, rateWindowMs: 60_000 } });
    const from = { 'x-forwarded-for': '203.0.113.7' };
    for (let i = 0; i < 4; i++) expect((await get(d.http, '/alerts', await tokenFor(i % 2 ? 'free' : 'other'), from)).status).toBe(200);
    expect((await get(d.http, '/alerts', await tokenFor('reader'), from)).status).toBe(429);
    expect((await get(d.http, '/alerts', await tokenFor('reader'), { 'x-forwarded-for': '203.0.113.8' })).status).toBe(200);
  });
});
