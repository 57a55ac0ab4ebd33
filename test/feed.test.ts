/**
 * The feed's states: seen and archived, by HTTP (POST /alerts/seen, /archive, /unarchive) and by
 * SQL (pgbell.mark_seen, pgbell.archive, pgbell.unarchive), with unread, unseen and per-type
 * counts. Every state change streams to every tab of the user like any change: a live tab, a tab
 * that was offline during the changes and resumes from its cursor, and a tab that polls
 * `GET /alerts?after=` all end with the same list and the same counts, and those equal a SELECT
 * on the tables. In every mode and both fan-outs. Another user's ids are refused with no effect.
 */
import { isDeepStrictEqual } from 'node:util';
import pg from 'pg';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, run } from './helpers/cli.js';
import { health, startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { MODES } from './helpers/modes.js';
import { freshDatabase, psql, query } from './helpers/pg.js';
import { seeded } from './helpers/random.js';
import { Tab, until } from './helpers/tab.js';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const haveRedis = await (async () => {
  const c = createClient({ url: REDIS_URL, socket: { reconnectStrategy: false, connectTimeout: 1000 } });
  c.on('error', () => {});
  try {
    await c.connect();
    await c.quit();
    return true;
  } catch {
    return false;
  }
})();

type Counts = { unread: number; unseen: number; byType: Record<string, { unread: number; unseen: number }> };

/** What a tab shows: the default list (not archived) by id, and the counts of the last message that had them. */
class Feed {
  readonly list = new Map<string, any>();
  counts: Counts | undefined;
  muted: string[] = [];
  unmuted = false;

  /** What pgbell/client does after an unmute: the list again, from GET /alerts. */
  reload(page: any): void {
    this.list.clear();
    this.applyPage({ ...page, deleted: [] });
    this.unmuted = false;
  }

  apply(m: any): void {
    const alerts = m.type === 'notification' || m.type === 'update' ? [m.alert] : m.type === 'notifications' ? m.alerts : [];
    for (const a of alerts) {
      if (a.archived) this.list.delete(a.id);
      else this.list.set(a.id, a);
    }
    if (m.type === 'delete') this.list.delete(m.id);
    // A tab without a type filter drops what is muted now, and reloads its list when a type was
    // unmuted (its alerts were not streamed meanwhile): `unmuted` says a reload is due.
    if (m.type === 'preferences') {
      for (const [id, a] of this.list) if (m.muted.includes(a.type)) this.list.delete(id);
      if (this.muted.some((t) => !m.muted.includes(t))) this.unmuted = true;
      this.muted = m.muted;
    }
    if (typeof m.unread === 'number') this.counts = { unread: m.unread, unseen: m.unseen, byType: m.byType };
  }

  /** A polled page of `GET /alerts?after=`. */
  applyPage(body: any): void {
    for (const a of body.alerts) {
      if (a.archived) this.list.delete(a.id);
      else this.list.set(a.id, a);
    }
    for (const id of body.deleted) this.list.delete(id);
    if (body.preferences) for (const [id, a] of this.list) if (body.preferences.muted.includes(a.type)) this.list.delete(id);
    this.counts = { unread: body.unread, unseen: body.unseen, byType: body.byType };
  }

  view(): { ids: string[]; seen: string[]; read: string[]; counts: Counts | undefined } {
    const all = [...this.list.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    return { ids: all.map((a) => a.id), seen: all.filter((a) => a.seen).map((a) => a.id), read: all.filter((a) => a.read).map((a) => a.id), counts: this.counts };
  }
}

/** A Tab whose every message also feeds a Feed: the messages each connection recorded, in order. */
function feedTab(token: string) {
  const tab = new Tab(token, true);
  const log = new Feed();
  const clients: NonNullable<Tab['client']>[] = [];
  const applied = new Map<unknown, number>();
  return {
    tab,
    /** The Feed with every message received so far applied. */
    get feed(): Feed {
      for (const c of clients) {
        for (let i = applied.get(c) ?? 0; i < c.messages.length; i++) log.apply(c.messages[i]);
        applied.set(c, c.messages.length);
      }
      return log;
    },
    connect: async (url: string) => {
      await tab.connect(url);
      clients.push(tab.client!);
    },
  };
}

async function truth(db: string, user: string): Promise<{ ids: string[]; seen: string[]; read: string[]; counts: Counts }> {
  const rows = await query(db, `SELECT id::text AS id, type, read, seen, archived FROM pgbell."Alert" WHERE "userId" = $1 ORDER BY id::text`, [user]);
  const muted: string[] = (await query(db, `SELECT coalesce((SELECT muted FROM pgbell.preference WHERE "userId" = $1), '{}') AS m`, [user]))[0]!.m;
  const live = rows.filter((r) => !r.archived && !muted.includes(r.type)).sort((a, b) => (a.id < b.id ? -1 : 1));
  const byType: Counts['byType'] = {};
  for (const r of live) {
    if (r.read) continue;
    const t = (byType[r.type] ??= { unread: 0, unseen: 0 });
    t.unread++;
    if (!r.seen) t.unseen++;
  }
  const sum = (k: 'unread' | 'unseen') => Object.values(byType).reduce((n, t) => n + t[k], 0);
  return { ids: live.map((r) => r.id), seen: live.filter((r) => r.seen).map((r) => r.id), read: live.filter((r) => r.read).map((r) => r.id), counts: { unread: sum('unread'), unseen: sum('unseen'), byType } };
}

async function post(base: string, user: string, path: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}/alerts/${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await tokenFor(user)}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

async function get(base: string, user: string, qs: string): Promise<any> {
  const res = await fetch(`${base}/alerts?${qs}`, { headers: { authorization: `Bearer ${await tokenFor(user)}` } });
  expect(res.status).toBe(200);
  return res.json();
}

/** A tab on the polling fallback: GET /alerts, then `?after=` until `more` is false. */
async function poll(base: string, user: string, feed: Feed, cursor: string): Promise<string> {
  for (;;) {
    const body = await get(base, user, `after=${encodeURIComponent(cursor)}`);
    feed.applyPage(body);
    cursor = body.cursor;
    if (!body.more) return cursor;
  }
}

const ids = async (db: string, where: string) => (await query(db, `SELECT id::text AS id FROM "Alert" WHERE ${where} ORDER BY id`)).map((r) => r.id as string);

const cases = (['notify', 'poll', 'wal'] as const).flatMap((mode) => [
  { mode, fanout: 'listen' as const },
  ...(haveRedis ? [{ mode, fanout: 'redis' as const }] : []),
]);

describe.each(cases)('seen and archived, $mode mode, $fanout fan-out', ({ mode, fanout }) => {
  let db: string;
  let daemon: TestDaemon;
  beforeAll(async () => {
    db = await freshDatabase(['alice', 'bob']);
    if (mode !== 'notify') expect((await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: mode }))).code).toBe(0);
    daemon = await startTestDaemon(db, { ...MODES[mode], ...(fanout === 'redis' ? { fanout: 'redis', redisUrl: REDIS_URL } : {}) });
    // As in test/redis.test.ts: the first relay a database ever has publishes from when it
    // starts, so the writes wait for it (see the note in docs/operations.md).
    if (fanout === 'redis') await until(async () => (await health(daemon.http)).body.listener.relay === true, 15_000, 'the relay');
  });
  afterAll(async () => {
    await daemon?.stop();
  });

  it('three tabs (live, offline then resumed, polling) converge on the list and the counts of the tables', async () => {
    const token = await tokenFor('alice');
    const live = feedTab(token);
    const offline = feedTab(token);
    await live.connect(daemon.url);
    await offline.connect(daemon.url);
    const polling = new Feed();
    const first = await get(daemon.http, 'alice', 'limit=50');
    expect(first).toMatchObject({ alerts: [], unread: 0, unseen: 0, byType: {} });
    let pollCursor: string = first.cursor;

    await query(db, `INSERT INTO "Alert" ("userId", type, title) SELECT 'alice', t, t || ' ' || i FROM generate_series(1, 4) i, unnest(ARRAY['billing', 'news']) t`);
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('bob', 'billing', 'not alice''s')`);
    await until(() => live.feed.list.size === 8 && offline.feed.list.size === 8, 10_000, 'the 8 alerts on both tabs');
    expect(live.feed.counts).toEqual({ unread: 8, unseen: 8, byType: { billing: { unread: 4, unseen: 4 }, news: { unread: 4, unseen: 4 } } });
    offline.tab.drop();

    const billing = await ids(db, `"userId" = 'alice' AND type = 'billing'`);
    const news = await ids(db, `"userId" = 'alice' AND type = 'news'`);
    expect(await post(daemon.http, 'alice', 'seen', { ids: [billing[0]] })).toEqual({ status: 200, body: { updated: 1 } });
    expect(await post(daemon.http, 'alice', 'read', { ids: [billing[1]] })).toMatchObject({ status: 200 });
    expect(await post(daemon.http, 'alice', 'archive', { ids: [news[0]] })).toEqual({ status: 200, body: { updated: 1 } });
    // A cron job archives by SQL, as the app's owner would.
    expect((await query(db, `SELECT pgbell.archive('alice', ARRAY[$1]) AS n`, [news[1]]))[0]!.n).toBe('1');
    pollCursor = await poll(daemon.http, 'alice', polling, pollCursor);
    expect(await post(daemon.http, 'alice', 'archive', { read: true })).toEqual({ status: 200, body: { updated: 1 } });
    expect(await post(daemon.http, 'alice', 'unarchive', { ids: [news[0]] })).toEqual({ status: 200, body: { updated: 1 } });
    expect((await query(db, `SELECT pgbell.mark_seen('alice', ARRAY[$1, $2]) AS n`, [billing[2], news[2]]))[0]!.n).toBe('2');
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('alice', 'billing', 'late')`);

    const expected = await truth(db, 'alice');
    expect(expected.counts.unread).toBe(7);
    await offline.connect(daemon.url);
    pollCursor = await poll(daemon.http, 'alice', polling, pollCursor);
    await until(async () => isDeepStrictEqual(live.feed.view(), expected), 10_000, 'the live tab to converge').catch(() => {});
    expect(live.feed.view()).toEqual(expected);
    await until(async () => isDeepStrictEqual(offline.feed.view(), expected), 10_000, 'the resumed tab to converge').catch(() => {});
    expect(offline.feed.view()).toEqual(expected);
    expect(polling.view()).toEqual(expected);
    // And the list itself: archived alerts only under ?archived=1.
    const listed = await get(daemon.http, 'alice', 'limit=50');
    expect(listed.alerts.map((a: any) => a.id).sort()).toEqual(expected.ids);
    expect({ unread: listed.unread, unseen: listed.unseen, byType: listed.byType }).toEqual(expected.counts);
    const archived = await get(daemon.http, 'alice', 'limit=50&archived=1');
    expect(archived.alerts.map((a: any) => a.id).sort()).toEqual([billing[1], news[1]].sort());
    expect(archived.alerts.every((a: any) => a.archived)).toBe(true);
    expect(live.tab.repeatsWithinConnection).toEqual([]);
    live.tab.close();
    offline.tab.close();
  });

  it('a muted type is neither streamed nor counted nor listed, except to a tab that asked for it by name', async () => {
    const token = await tokenFor('bob');
    // A tab as pgbell/client runs one: the list first, then the socket from its cursor.
    const plain = feedTab(token);
    const start = await get(daemon.http, 'bob', 'limit=50');
    plain.feed.applyPage({ ...start, deleted: [] });
    plain.tab.cursor = start.cursor;
    await plain.connect(daemon.url);
    const namedClient = await (async () => {
      const c = await (await import('./helpers/client.js')).TestClient.connect(daemon.url);
      c.send({ type: 'auth', token, types: ['marketing'] });
      await c.next((m) => m.type === 'synced');
      return c;
    })();
    const pollFeed = new Feed();
    pollFeed.applyPage({ ...start, deleted: [] });
    let pollCursor: string = start.cursor;
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('bob', 'marketing', 'sale'), ('bob', 'security', 'login')`);
    await until(() => ['sale', 'login'].every((t) => [...plain.feed.list.values()].some((x) => x.title === t)), 10_000, 'the new alerts');
    expect((await fetch(`${daemon.http}/alerts/preferences`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.json()))).toEqual({ muted: [] });
    const put = await fetch(`${daemon.http}/alerts/preferences`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ muted: ['marketing', 'marketing'] }) });
    expect(await put.json()).toEqual({ muted: ['marketing'] });
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('bob', 'marketing', 'muted sale'), ('bob', 'security', 'after mute')`);
    const expected = await truth(db, 'bob');
    expect(expected.ids.length).toBeGreaterThan(0);
    expect(Object.keys(expected.counts.byType)).not.toContain('marketing');
    await until(async () => isDeepStrictEqual(plain.feed.view(), expected), 10_000, 'the plain tab to converge').catch(() => {});
    expect(plain.feed.view()).toEqual(expected);
    expect(plain.tab.client!.messages.some((m) => m.type === 'preferences' && m.muted.join() === 'marketing')).toBe(true);
    expect(plain.tab.client!.messages.some((m) => m.alert?.title === 'muted sale')).toBe(false);
    // The tab that subscribed to marketing by name still gets it.
    await namedClient.next((m) => m.type === 'notification' && m.alert.title === 'muted sale', 10_000);
    // Polling: the same.
    pollCursor = await poll(daemon.http, 'bob', pollFeed, pollCursor);
    expect(pollFeed.view()).toEqual(expected);
    const listed = await get(daemon.http, 'bob', 'limit=50');
    expect(listed.alerts.map((a: any) => a.id).sort()).toEqual(expected.ids);
    expect(listed.byType.marketing).toBeUndefined();
    expect((await get(daemon.http, 'bob', 'limit=50&types=marketing')).alerts.map((a: any) => a.title).sort()).toEqual(['muted sale', 'sale']);
    // A tab that resumes from before the mute gets the mute, not the muted alert.
    const resumed = new Tab(token, true);
    resumed.cursor = plain.tab.client!.messages.find((m) => m.type === 'synced').cursor;
    await resumed.connect(daemon.url);
    expect(resumed.client!.messages.some((m) => m.type === 'preferences')).toBe(true);
    expect(resumed.client!.messages.some((m) => m.alert?.title === 'muted sale')).toBe(false);
    // Unmuted: the stream says so, and counts and list have the type again.
    await fetch(`${daemon.http}/alerts/preferences`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ muted: [] }) });
    const unmuted = await plain.tab.client!.next((m) => m.type === 'preferences' && m.muted.length === 0, 10_000);
    expect(unmuted.byType.marketing).toBeDefined();
    expect((await get(daemon.http, 'bob', 'limit=50')).alerts.some((a: any) => a.title === 'muted sale')).toBe(true);
    for (const t of [plain.tab, resumed]) t.close();
    namedClient.close();
    // Bad preferences change nothing.
    for (const body of [{ muted: 'marketing' }, { muted: [''] }, { other: [] }, { muted: Array.from({ length: 51 }, (_, i) => `t${i}`) }]) {
      const r = await fetch(`${daemon.http}/alerts/preferences`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect(r.status, JSON.stringify(body)).toBe(400);
    }
    expect((await fetch(`${daemon.http}/alerts/preferences`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })).status).toBe(405);
  });

  it("refuses another user's ids, unknown ids and bad bodies, with no effect", async () => {
    const bobs = await ids(db, `"userId" = 'bob'`);
    const alices = await ids(db, `"userId" = 'alice'`);
    const before = await query(db, `SELECT id, seen, archived, "changedTxid"::text FROM pgbell."AlertChange" ORDER BY id`);
    for (const path of ['seen', 'archive', 'unarchive']) {
      const theirs = await post(daemon.http, 'alice', path, { ids: [alices[0], bobs[0]] });
      expect(theirs.status, path).toBe(404);
      expect(theirs.body.error).toBe('unknown_alert');
      expect((await post(daemon.http, 'alice', path, { ids: ['no-such-id'] })).status).toBe(404);
      expect((await post(daemon.http, 'alice', path, { ids: [] })).status).toBe(400);
      expect((await post(daemon.http, 'alice', path, { ids: Array.from({ length: 1001 }, (_, i) => String(i)) })).status).toBe(400);
      expect((await post(daemon.http, 'alice', path, { nonsense: true })).body.error).toBe('bad_request');
    }
    expect((await post(daemon.http, 'alice', 'seen', { read: true })).status).toBe(400);
    // Postgres text cannot hold NUL: bad input, not "the database is unavailable".
    for (const path of ['seen', 'read', 'archive']) expect((await post(daemon.http, 'alice', path, { ids: ['1\u0000'] })).status, path).toBe(400);
    expect((await post(daemon.http, 'alice', 'unarchive', { all: true })).status).toBe(400);
    expect(await query(db, `SELECT id, seen, archived, "changedTxid"::text FROM pgbell."AlertChange" ORDER BY id`)).toEqual(before);
  });
});

describe('archiving by SQL from a role of its own', () => {
  it('a cron role granted only pgbell.archive archives month-old alerts, and the tab sees it live', async () => {
    const db = await freshDatabase(['alice', 'bob']);
    const daemon = await startTestDaemon(db);
    try {
      const tab = feedTab(await tokenFor('alice'));
      await tab.connect(daemon.url);
      await query(db, `INSERT INTO "Alert" ("userId", title, "createdAt") VALUES ('alice', 'old', now() - interval '40 days'), ('alice', 'new', now()), ('bob', 'old too', now() - interval '40 days')`);
      await until(() => tab.feed.list.size === 2, 10_000, 'the two alerts');
      const role = `cron_${Date.now()}`;
      await query(db, `CREATE ROLE ${role} LOGIN PASSWORD 'cron'`);
      await query(db, `GRANT SELECT ON "Alert" TO ${role}; GRANT USAGE ON SCHEMA pgbell TO ${role}; GRANT EXECUTE ON FUNCTION pgbell.archive(text, text[], boolean, int) TO ${role}`);
      const url = new URL(db);
      url.username = role;
      url.password = 'cron';
      // As in docs/operations.md.
      const done = await query(url.toString(), `SELECT pgbell.archive("userId", array_agg(id::text)) AS n FROM "Alert" WHERE "createdAt" < now() - interval '30 days' GROUP BY "userId" ORDER BY 1`);
      expect(done.map((r) => r.n)).toEqual(['1', '1']);
      // Nothing else of pgbell's is open to it.
      await expect(query(url.toString(), `SELECT pgbell.mark_seen('alice', NULL)`)).rejects.toThrow(/permission denied/);
      await expect(query(url.toString(), `UPDATE pgbell."AlertChange" SET archived = false`)).rejects.toThrow(/permission denied/);
      await until(() => tab.feed.list.size === 1, 10_000, 'the old alert to leave the list');
      expect([...tab.feed.list.values()].map((a) => a.title)).toEqual(['new']);
      tab.tab.close();
    } finally {
      await daemon.stop();
    }
  });
});

describe('a state change never waits for a writer', () => {
  it('archive all goes around a row a writer holds (reported as pending), and the writer never waits for it', async () => {
    const db = await freshDatabase(['alice']);
    const daemon = await startTestDaemon(db);
    const writer = new pg.Client({ connectionString: db });
    await writer.connect();
    try {
      await query(db, `INSERT INTO "Alert" ("userId", title) SELECT 'alice', 'a' || i FROM generate_series(1, 1200) i`);
      const [held, other] = (await query(db, `SELECT id::text AS id FROM "Alert" ORDER BY id LIMIT 2`)).map((r) => r.id as string);
      // A writer in the middle of its transaction: it holds the bookkeeping row of `held`.
      await writer.query('BEGIN');
      await writer.query(`UPDATE "Alert" SET title = 'writing' WHERE id = $1`, [held]);
      const started = Date.now();
      const res = await post(daemon.http, 'alice', 'archive', { all: true });
      const took = Date.now() - started;
      // It did not wait for the writer's commit (which never comes while it runs).
      expect(res).toEqual({ status: 200, body: { updated: 1199, pending: 1 } });
      expect(took).toBeLessThan(8000);
      // And the writer's next statement, on a row the archive changed, does not wait for it.
      await writer.query(`UPDATE "Alert" SET title = 'again' WHERE id = $1`, [other]);
      await writer.query('COMMIT');
      expect(await post(daemon.http, 'alice', 'archive', { all: true })).toEqual({ status: 200, body: { updated: 1 } });
      expect((await query(db, `SELECT count(*)::int AS n FROM pgbell."Alert" WHERE NOT archived`))[0]!.n).toBe(0);
    } finally {
      await writer.end();
      await daemon.stop();
    }
  });
});

describe('preferences at the edges', () => {
  it('a polling tab gets every delete past a page when a change of preferences follows them', async () => {
    const db = await freshDatabase(['alice']);
    const daemon = await startTestDaemon(db);
    try {
      await query(db, `INSERT INTO "Alert" ("userId", title) SELECT 'alice', 'a' || i FROM generate_series(1, 600) i`);
      const first = await get(daemon.http, 'alice', 'limit=1');
      await psql(db, `DO $$ DECLARE r record; BEGIN FOR r IN SELECT id FROM "Alert" LOOP DELETE FROM "Alert" WHERE id = r.id; COMMIT; END LOOP; END $$`);
      await query(db, `SELECT pgbell.set_muted('alice', ARRAY['marketing'])`);
      const deleted = new Set<string>();
      let cursor: string = first.cursor;
      for (let page = 0; page < 10; page++) {
        const body = await get(daemon.http, 'alice', `after=${encodeURIComponent(cursor)}`);
        for (const id of body.deleted) deleted.add(id);
        cursor = body.cursor;
        if (!body.more) break;
      }
      // Before: 501 of 600 (the preferences row was counted as a delete, and its transaction taken as the cut).
      expect(deleted.size).toBe(600);
    } finally {
      await daemon.stop();
    }
  });

  it('a restored database: preferences stamped with ids this cluster has not handed out are re-stamped by migrate', async () => {
    const db = await freshDatabase(['alice']);
    await query(db, `INSERT INTO pgbell.preference ("userId", muted, "changedTxid") VALUES ('alice', '{news}', (pg_current_xact_id()::text::bigint + 200)::text::xid8)`);
    const r = await run(['migrate'], cleanEnv({ DATABASE_URL: db }));
    expect(r.code, r.stderr).toBe(0);
    expect((await query(db, `SELECT "changedTxid"::text AS t FROM pgbell.preference`))[0]!.t).toBe('3');
  });
});

describe('a database made by a newer pgbell', () => {
  it('migrate and the daemon refuse it, naming the versions, and change nothing', async () => {
    const db = await freshDatabase(['alice']);
    await query(db, `UPDATE pgbell.install SET version = 99`);
    const before = await query(db, `SELECT pg_get_viewdef('pgbell."Alert"'::regclass) AS v`);
    const r = await run(['migrate'], cleanEnv({ DATABASE_URL: db }));
    expect(r.code).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(/version 99, made by a newer pgbell/);
    expect(await query(db, `SELECT pg_get_viewdef('pgbell."Alert"'::regclass) AS v`)).toEqual(before);
    await expect(startTestDaemon(db)).rejects.toThrow(/newer pgbell/);
  });
});

describe('ALERT_TYPES', () => {
  it('a preference naming a type outside ALERT_TYPES is refused with 400 naming it, and nothing changes', async () => {
    const db = await freshDatabase(['alice']);
    const daemon = await startTestDaemon(db, { alertTypes: ['billing', 'news'] });
    try {
      const token = await tokenFor('alice');
      const put = (muted: string[]) => fetch(`${daemon.http}/alerts/preferences`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ muted }) });
      expect(await (await put(['news'])).json()).toEqual({ muted: ['news'] });
      const refused = await put(['billing', 'spam']);
      expect(refused.status).toBe(400);
      expect(((await refused.json()) as { message: string }).message).toMatch(/unknown type "spam"/);
      expect(await (await fetch(`${daemon.http}/alerts/preferences`, { headers: { authorization: `Bearer ${token}` } })).json()).toEqual({ muted: ['news'] });
    } finally {
      await daemon.stop();
    }
  });
});

describe('a randomized run of inserts, reads, seen-marks, archives, mutes and deletes', () => {
  it.each(['notify', 'wal'] as const)('%s mode: the live tab and a fresh read equal a SELECT on the tables', async (mode) => {
    const db = await freshDatabase(['alice', 'bob']);
    if (mode !== 'notify') expect((await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: mode }))).code).toBe(0);
    const daemon = await startTestDaemon(db, MODES[mode]);
    try {
      const tab = feedTab(await tokenFor('alice'));
      await tab.connect(daemon.url);
      const rnd = seeded(20261207);
      const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)]!;
      for (let step = 0; step < 150; step++) {
        const mine = await ids(db, `"userId" = 'alice'`);
        const r = rnd();
        const some = () => [...new Set(Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => pick(mine)))];
        if (mine.length < 3 || r < 0.3) {
          await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ($1, $2, 'x')`, [rnd() < 0.8 ? 'alice' : 'bob', pick(['billing', 'news', 'security'])]);
        } else if (r < 0.4) {
          await query(db, `UPDATE "Alert" SET read = true WHERE id::text = ANY($1::text[])`, [some()]);
        } else if (r < 0.5) {
          const r1 = await post(daemon.http, 'alice', 'seen', rnd() < 0.2 ? { all: true } : { ids: some() });
          expect(r1.status, JSON.stringify(r1.body)).toBe(200);
        } else if (r < 0.6) {
          await query(db, `SELECT pgbell.mark_seen('alice', $1::text[])`, [some()]);
        } else if (r < 0.7) {
          const body = rnd() < 0.1 ? { all: true } : rnd() < 0.2 ? { read: true } : { ids: some() };
          const r2 = await post(daemon.http, 'alice', 'archive', body);
          expect(r2.status, JSON.stringify(r2.body)).toBe(200);
        } else if (r < 0.8) {
          const r3 = await post(daemon.http, 'alice', 'unarchive', { ids: some() });
          expect(r3.status, JSON.stringify(r3.body)).toBe(200);
        } else if (r < 0.87) {
          await query(db, `SELECT pgbell.archive('alice', $1::text[])`, [some()]);
        } else if (r < 0.91) {
          await query(db, `DELETE FROM "Alert" WHERE id::text = $1`, [pick(mine)]);
        } else if (r < 0.95) {
          // Mute a random set of types (often none: an unmute), by HTTP or by SQL.
          const muted = ['billing', 'news', 'security'].filter(() => rnd() < 0.3);
          if (rnd() < 0.5) await fetch(`${daemon.http}/alerts/preferences`, { method: 'PUT', headers: { authorization: `Bearer ${await tokenFor('alice')}`, 'content-type': 'application/json' }, body: JSON.stringify({ muted }) });
          else await query(db, `SELECT pgbell.set_muted('alice', $1::text[])`, [muted]);
        } else {
          // One transaction: a state change and a delete and a new alert together.
          await query(db, `WITH a AS (SELECT pgbell.archive('alice', $1::text[])) INSERT INTO "Alert" ("userId", type, title) SELECT 'alice', 'news', 'with ' || (SELECT * FROM a)`, [some()]);
        }
      }
      const expected = await truth(db, 'alice');
      // The stream's counts are exact whatever the list; the list after the reload an unmute asks for.
      await until(async () => isDeepStrictEqual(tab.feed.counts, expected.counts), 15_000, 'the counts to converge').catch(() => {});
      expect(tab.feed.counts).toEqual(expected.counts);
      if (tab.feed.unmuted) tab.feed.reload(await get(daemon.http, 'alice', 'limit=200'));
      await until(async () => isDeepStrictEqual(tab.feed.view(), expected), 15_000, 'the tab to converge').catch(() => {});
      expect(tab.feed.view()).toEqual(expected);
      const fresh = await get(daemon.http, 'alice', 'limit=200');
      expect({ unread: fresh.unread, unseen: fresh.unseen, byType: fresh.byType }).toEqual(expected.counts);
      expect(fresh.alerts.map((a: any) => a.id).sort()).toEqual(expected.ids);
      expect(tab.tab.repeatsWithinConnection).toEqual([]);
      tab.tab.close();
    } finally {
      await daemon.stop();
    }
  });
});
