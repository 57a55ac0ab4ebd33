/**
 * Older pages of the bell's list, GET /alerts?before=<alertId>: stable while alerts arrive, on
 * pgbell's own table and on an installed one, and refused for an id that is not the user's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secretKey } from '../src/auth.js';
import { createDb, type Db } from '../src/db/connect.js';
import { install } from '../src/db/install.js';
import { alertsHandler, type AlertsHandler } from '../src/server/alerts.js';
import { SECRET, tokenFor } from './helpers/daemon.js';
import { emptyDatabase, freshDatabase, query } from './helpers/pg.js';

const dbs: Db[] = [];
afterAll(async () => {
  for (const d of dbs) await d.destroy();
});

function handlerFor(url: string): AlertsHandler {
  const db = createDb(url);
  dbs.push(db);
  return alertsHandler({ db, key: secretKey(SECRET), allowedOrigins: [], maxReplay: 10_000 });
}

async function get(handler: AlertsHandler, user: string, qs: string): Promise<{ status: number; body: any }> {
  const res = await handler(new Request(`http://app.local/alerts?${qs}`, { headers: { authorization: `Bearer ${await tokenFor(user)}` } }));
  return { status: res.status, body: await res.json() };
}

/** Every page from the first to the one with `more: false`; `between` runs before each next page. */
async function allPages(handler: AlertsHandler, user: string, qs: string, between: () => Promise<void> = async () => {}): Promise<any[][]> {
  const pages: any[][] = [];
  let r = await get(handler, user, qs);
  for (;;) {
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    pages.push(r.body.alerts);
    if (!r.body.more) return pages;
    expect(r.body.alerts.length, 'a page with more: true is full').toBeGreaterThan(0);
    await between();
    r = await get(handler, user, `${qs}&before=${encodeURIComponent(r.body.alerts.at(-1).id)}`);
    expect(r.body.unread, 'an older page carries no count of its own').toBeUndefined();
  }
}

function expectNoDuplicates(ids: string[]): void {
  const seen = new Set<string>();
  const dups = ids.filter((id) => (seen.has(id) ? true : (seen.add(id), false)));
  expect(dups, 'alerts on two pages').toEqual([]);
}

describe("pgbell's own table", () => {
  let db: string;
  let handler: AlertsHandler;
  beforeAll(async () => {
    db = await freshDatabase(['alice', 'bob']);
    handler = handlerFor(db);
  });

  it('pages below `before` while a writer inserts: no duplicate, no gap, exactly the alerts of when paging began, none of another user', async () => {
    // Ties on createdAt (one statement's rows share now()) and neighbours a microsecond apart
    // (JavaScript's Date cannot tell them apart): the keyset must hold on both.
    await query(db, `INSERT INTO "Alert" ("userId", title) SELECT u, u || ' tie ' || i FROM generate_series(1, 45) i, unnest(ARRAY['alice', 'bob']) u`);
    await query(db, `INSERT INTO "Alert" ("userId", title, "createdAt") SELECT u, u || ' µs ' || i, now() - interval '1 hour' - make_interval(secs => i / 1e6)
      FROM generate_series(1, 40) i, unnest(ARRAY['alice', 'bob']) u`);
    await query(db, `INSERT INTO "Alert" ("userId", title, "createdAt") SELECT 'alice', 'spread ' || i, now() - make_interval(mins => i) FROM generate_series(1, 30) i`);
    const before = (await query(db, `SELECT id FROM "Alert" WHERE "userId" = 'alice' ORDER BY "createdAt" DESC, id DESC`)).map((r) => r.id as string);
    expect(before).toHaveLength(115);

    // Once the first page is read: a writer that does not wait for the pages, and before each
    // page an insert of new alerts (newer than every page: they would shift an offset) and of
    // another user's backdated ones.
    let writing = true;
    let written = 0;
    let writer: Promise<void> | undefined;
    const pages = await allPages(handler, 'alice', 'limit=7', async () => {
      writer ??= (async () => {
        while (writing) {
          await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'concurrent'), ('bob', 'concurrent')`);
          written++;
        }
      })();
      await query(db, `INSERT INTO "Alert" ("userId", title) SELECT 'alice', 'between ' || i FROM generate_series(1, 7) i`);
      await query(db, `INSERT INTO "Alert" ("userId", title, "createdAt") SELECT 'bob', 'bob backdated', now() - interval '30 min' FROM generate_series(1, 3)`);
    });
    writing = false;
    await writer;
    expect(written, 'the writer ran while the pages were read').toBeGreaterThan(0);

    const ids = pages.flat().map((a) => a.id as string);
    expect(pages.flat().every((a) => a.userId === 'alice')).toBe(true);
    expectNoDuplicates(ids);
    expect(ids).toEqual(before);
    expect(pages.length).toBeGreaterThan(15);
    expect(pages.slice(0, -1).every((p) => p.length === 7)).toBe(true);
  });

  it('the first page says more: true or false', async () => {
    expect((await get(handler, 'bob', 'limit=1')).body).toMatchObject({ more: true, alerts: [expect.anything()] });
    const lone = await freshDatabase(['carl']);
    const h = handlerFor(lone);
    expect((await get(h, 'carl', 'limit=5')).body).toMatchObject({ alerts: [], more: false });
    await query(lone, `INSERT INTO "Alert" ("userId", title) SELECT 'carl', 't' || i FROM generate_series(1, 5) i`);
    expect((await get(h, 'carl', 'limit=5')).body).toMatchObject({ more: false });
    expect((await get(h, 'carl', 'limit=4')).body).toMatchObject({ more: true });
    const last = (await get(h, 'carl', 'limit=4')).body.alerts.at(-1).id;
    expect((await get(h, 'carl', `limit=4&before=${last}`)).body).toMatchObject({ alerts: [expect.anything()], more: false });
  });

  it('before combines with types: pages of those types only, the same as one read of them', async () => {
    const user = 'dora';
    await query(db, `INSERT INTO "User" (id, email) VALUES ('dora', 'dora@example.test')`);
    await query(db, `INSERT INTO "Alert" ("userId", type, title, "createdAt")
      SELECT 'dora', (ARRAY['billing', 'security', 'general'])[i % 3 + 1], 't' || i, now() - make_interval(secs => i / 3) FROM generate_series(1, 60) i`);
    const truth = (await query(db, `SELECT id FROM "Alert" WHERE "userId" = 'dora' AND type IN ('billing', 'security') ORDER BY "createdAt" DESC, id DESC`)).map((r) => r.id);
    const pages = await allPages(handler, user, 'limit=6&types=billing,security');
    expect(pages.flat().map((a) => a.id)).toEqual(truth);
    expect(pages.flat().every((a) => a.type !== 'general')).toBe(true);
    // An alert of another type still marks a place in the list.
    const general = (await query(db, `SELECT id FROM "Alert" WHERE "userId" = 'dora' AND type = 'general' AND title = 't32'`))[0]!.id;
    const below = await get(handler, user, `limit=200&types=billing&before=${general}`);
    const expected = (await query(db, `SELECT a.id FROM "Alert" a, "Alert" g WHERE g.id = $1 AND a."userId" = 'dora' AND a.type = 'billing'
      AND (a."createdAt", a.id) < (g."createdAt", g.id) ORDER BY a."createdAt" DESC, a.id DESC`, [general])).map((r) => r.id);
    expect(expected.length).toBeGreaterThan(0);
    expect(below.body).toEqual({ alerts: expect.any(Array), more: false });
    expect(below.body.alerts.map((a: any) => a.id)).toEqual(expected);
  });

  it("another user's alert id, an unknown one, a deleted one: the same 404 naming the problem, nothing of the other user", async () => {
    const bobs = (await query(db, `SELECT id FROM "Alert" WHERE "userId" = 'bob' LIMIT 1`))[0]!.id as string;
    const gone = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'gone') RETURNING id`))[0]!.id as string;
    await query(db, `DELETE FROM "Alert" WHERE id = $1`, [gone]);
    for (const id of [bobs, 'no-such-alert', gone]) {
      const r = await get(handler, 'alice', `before=${encodeURIComponent(id)}`);
      expect(r.status, id).toBe(404);
      expect(r.body).toEqual({ error: 'unknown_alert', message: `before: no alert ${JSON.stringify(id)} of this user (deleted, or not theirs); page from an alert you hold` });
    }
    // The owner pages from it as usual.
    expect((await get(handler, 'bob', `limit=1&before=${bobs}`)).status).toBe(200);
  });

  it.each([
    ['before=', 'before: an alert id must be non-empty'],
    [`before=${'x'.repeat(201)}`, 'before: an id is longer than 200 characters'],
    ['before=x&after=y', 'send either after (changes since a cursor) or before (older alerts), not both'],
    ['before=x&limit=0', 'limit must be at least 1'],
  ])('400 for %s', async (qs, message) => {
    const r = await get(handler, 'alice', qs);
    expect(r).toEqual({ status: 400, body: { error: 'bad_request', message } });
  });
});

describe('an installed table with bigint ids', () => {
  let url: string;
  let handler: AlertsHandler;
  beforeAll(async () => {
    url = await emptyDatabase('paging');
    await query(url, `CREATE TABLE notes (id bigserial PRIMARY KEY, owner text NOT NULL, title text NOT NULL, at timestamptz NOT NULL DEFAULT now())`);
    await install(url, { table: 'notes', userColumn: 'owner', titleColumn: 'title', createdColumn: 'at', channel: 'pgbell' });
    handler = handlerFor(url);
  });

  it('pages across ids of different lengths (the list orders ids as text: 9 after 10) with ties, no duplicate, no gap', async () => {
    await query(url, `INSERT INTO notes (owner, title) SELECT o, 't' || i FROM generate_series(1, 120) i, unnest(ARRAY['ann', 'bo']) o`);
    const truth = (await query(url, `SELECT id::text FROM notes WHERE owner = 'ann' ORDER BY at DESC, id::text DESC`)).map((r) => r.id);
    const pages = await allPages(handler, 'ann', 'limit=9', async () => {
      await query(url, `INSERT INTO notes (owner, title) VALUES ('ann', 'new'), ('bo', 'new')`);
    });
    const ids = pages.flat().map((a) => a.id);
    expectNoDuplicates(ids);
    expect(ids).toEqual(truth);
  });

  it('an id that is not even a bigint, or is another owner\'s, is a 404, not a database error', async () => {
    const bos = (await query(url, `INSERT INTO notes (owner, title) VALUES ('bo', 'not ann''s') RETURNING id::text`))[0]!.id;
    for (const id of ['abc', '99999999999999999999999', bos]) {
      const r = await get(handler, 'ann', `before=${id}`);
      expect(r.status, id).toBe(404);
      expect(r.body.error).toBe('unknown_alert');
    }
  });
});
