/**
 * The /alerts read side: served by the daemon over real HTTP, and the same handler called
 * directly with a web-standard Request, as an app's route would.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secretKey } from '../src/auth.js';
import { createDb } from '../src/db/connect.js';
import { alertsHandler } from '../src/server/alerts.js';
import { startTestDaemon, tokenFor, SECRET, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, psql, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let db: string;
let daemon: TestDaemon;
const ORIGIN = 'https://app.example.test';

beforeAll(async () => {
  db = await freshDatabase(['alice', 'bob', 'carol']);
  daemon = await startTestDaemon(db, { allowedOrigins: [ORIGIN] });
});
afterAll(async () => {
  await daemon?.stop();
});

async function get(path: string, token?: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${daemon.http}${path}`, { headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers } });
  return { status: res.status, headers: res.headers, body: (await res.json()) as any };
}

async function post(path: string, token: string, body: unknown) {
  const res = await fetch(`${daemon.http}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as any };
}

describe('GET /alerts', () => {
  it('lists the user\'s newest alerts first with the unread count and a cursor; other users\' alerts never appear', async () => {
    await psql(db, `INSERT INTO "Alert" ("userId", title, "createdAt") VALUES ('alice', 'old', now() - interval '2 min'), ('alice', 'mid', now() - interval '1 min'), ('alice', 'new', now()), ('bob', 'bob''s', now())`);
    await psql(db, `UPDATE "Alert" SET read = true WHERE title = 'old'`);
    const r = await get('/alerts?limit=2', await tokenFor('alice'));
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(r.body.alerts.map((a: any) => a.title)).toEqual(['new', 'mid']);
    expect(r.body.alerts[0]).toMatchObject({ userId: 'alice', read: false, type: 'general', link: null, data: null });
    expect(r.body.unread).toBe(2);
    expect(r.body.cursor).toMatch(/^1\./);
    const all = await get('/alerts', await tokenFor('alice'));
    expect(all.body.alerts.map((a: any) => a.title)).toEqual(['new', 'mid', 'old']);
  });

  it('?after=<cursor> returns only what changed since, oldest first, with deletes and a new cursor (the polling fallback)', async () => {
    const token = await tokenFor('carol');
    const first = await get('/alerts', token);
    expect(first.body).toMatchObject({ alerts: [], unread: 0 });
    const ids = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('carol', 'c1'), ('carol', 'c2') RETURNING id`)).map((r) => r.id);
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('bob', 'not carol''s')`);
    const second = await get(`/alerts?after=${encodeURIComponent(first.body.cursor)}`, token);
    expect(second.status).toBe(200);
    expect(second.body.alerts.map((a: any) => a.title)).toEqual(['c1', 'c2']);
    expect(second.body).toMatchObject({ deleted: [], unread: 2 });

    await psql(db, `DELETE FROM "Alert" WHERE id = '${ids[0]}'; UPDATE "Alert" SET read = true WHERE id = '${ids[1]}'`);
    const third = await get(`/alerts?after=${encodeURIComponent(second.body.cursor)}`, token);
    expect(third.body.deleted).toEqual([ids[0]]);
    expect(third.body.alerts.map((a: any) => [a.id, a.read])).toEqual([[ids[1], true]]);
    expect(third.body.unread).toBe(0);
    const fourth = await get(`/alerts?after=${encodeURIComponent(third.body.cursor)}`, token);
    expect(fourth.body).toMatchObject({ alerts: [], deleted: [], unread: 0 });
  });

  it('the list\'s cursor, used to go live over the socket, misses nothing committed after the list and repeats nothing in it', async () => {
    const token = await tokenFor('bob');
    const list = await get('/alerts', token);
    const after = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('bob', 'after the list') RETURNING id`))[0]!.id;
    const tab = new Tab(token);
    tab.cursor = list.body.cursor;
    await tab.connect(daemon.url);
    await until(() => tab.ids.has(after), 5000, 'the alert committed after the list');
    expect([...tab.ids]).toEqual([after]);
    tab.close();
  });

  it('&types=a,b filters the list, the changes and the unread count', async () => {
    const token = await tokenFor('carol');
    const before = await get('/alerts?types=billing', token);
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('carol', 'billing', 'cb'), ('carol', 'security', 'cs'), ('carol', 'general', 'cg')`);
    const list = await get('/alerts?types=billing,security', token);
    expect(list.body.alerts.map((a: any) => a.title).sort()).toEqual(['cb', 'cs']);
    expect(list.body.unread).toBe(2);
    const since = await get(`/alerts?types=billing&after=${encodeURIComponent(before.body.cursor)}`, token);
    expect(since.body.alerts.map((a: any) => a.title)).toEqual(['cb']);
    expect(since.body.unread).toBe(1);
    expect((await get(`/alerts?types=${'x,'.repeat(60)}`, token)).body).toEqual({ error: 'bad_request', message: 'types: at most 50 types' });
  });

  it.each([
    ['no Authorization header', undefined, 'send the session token as "Authorization: Bearer <token>"'],
    ['a token signed with another secret', async () => tokenFor('alice', { secret: 'another-secret-another-secret-123456' }), 'Invalid session token'],
    ['an expired token', async () => tokenFor('alice', { ttlSeconds: -60 }), 'Invalid session token'],
  ])('401 with %s', async (_l, make, message) => {
    const r = await get('/alerts', make ? await make() : undefined);
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(r.body).toEqual({ error: 'unauthorized', message });
  });

  it.each([
    ['?limit=0', 400, 'bad_request', 'limit must be at least 1'],
    ['?limit=500', 400, 'bad_request', 'limit must be at most 200'],
    ['?limit=ten', 400, 'bad_request', 'limit must be a whole number'],
    ['?after=garbage', 410, 'cursor_reset', 'cursor is not one pgbell issued; reload with GET /alerts'],
  ])('GET /alerts%s → %i %s', async (q, status, error, message) => {
    const r = await get(`/alerts${q}`, await tokenFor('alice'));
    expect(r.status).toBe(status);
    expect(r.body).toEqual({ error, message });
  });

  it('CORS: a configured origin gets the headers and a preflight answer; another origin gets none', async () => {
    const ok = await get('/alerts', await tokenFor('alice'), { origin: ORIGIN });
    expect(ok.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    const pre = await fetch(`${daemon.http}/alerts/read`, { method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': 'POST' } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-headers')).toContain('authorization');
    const other = await get('/alerts', await tokenFor('alice'), { origin: 'https://evil.example' });
    expect(other.status).toBe(200);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('POST /alerts/read', () => {
  it('marks the given ids (only the user\'s own) or all; open tabs get the updates', async () => {
    const token = await tokenFor('alice');
    await query(db, `UPDATE "Alert" SET read = true WHERE "userId" = 'alice'`);
    const ids = (await query(db, `INSERT INTO "Alert" ("userId", title) SELECT 'alice', 'p' || i FROM generate_series(1, 3) i RETURNING id`)).map((r) => r.id);
    const bobs = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('bob', 'bob unread') RETURNING id`))[0]!.id;
    const tab = await new Tab(token).connect(daemon.url);

    expect(await post('/alerts/read', token, { ids: [ids[0], bobs] })).toEqual({ status: 200, body: { updated: 1 } });
    await until(() => tab.updates.length === 1, 5000, 'the update on the socket');
    expect(tab.updates[0]).toMatchObject({ alert: { id: ids[0], read: true }, unread: 2 });
    expect((await query(db, `SELECT read FROM "Alert" WHERE id = $1`, [bobs]))[0]!.read).toBe(false);

    expect(await post('/alerts/read', token, { all: true })).toEqual({ status: 200, body: { updated: 2 } });
    expect((await get('/alerts', token)).body.unread).toBe(0);
    tab.close();
  });

  it.each([
    ['not JSON', '{', 'body is not valid JSON; send {"ids":[…]} or {"all":true}'],
    ['neither ids nor all', {}, 'expected {"ids":["<alert id>", ...]} or {"all":true}'],
    ['all: false', { all: false }, 'expected {"ids":["<alert id>", ...]} or {"all":true}'],
    ['ids not strings', { ids: [1] }, 'expected {"ids":["<alert id>", ...]} or {"all":true}'],
  ])('400 for a body that is %s', async (_l, body, message) => {
    expect(await post('/alerts/read', await tokenFor('alice'), body)).toEqual({ status: 400, body: { error: 'bad_request', message } });
  });

  it('405 for the wrong method; 413 for a huge body', async () => {
    const r = await fetch(`${daemon.http}/alerts/read`, { headers: { authorization: `Bearer ${await tokenFor('alice')}` } });
    expect(r.status).toBe(405);
    expect(await post('/alerts/read', await tokenFor('alice'), { ids: ['x'.repeat(70_000)] })).toMatchObject({ status: 413, body: { error: 'payload_too_large' } });
  });
});

describe('alertsHandler mounted in an app', () => {
  it('is a plain Request → Response function imported from the package, working under any path prefix', async () => {
    // As an app would: the built package's own entry point.
    const pkg = await import('pgbell');
    const appDb = pkg.createDb(db);
    const handler = pkg.alertsHandler({ db: appDb, key: pkg.secretKey(SECRET), allowedOrigins: [], maxReplay: 100 });
    const token = await tokenFor('carol');
    const res = await handler(new Request('http://app.local/api/alerts?limit=5', { headers: { authorization: `Bearer ${token}` } }));
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    expect(body).toMatchObject({ unread: expect.any(Number), cursor: expect.stringMatching(/^1\./) });
    const readAll = () => handler(new Request('http://app.local/api/alerts/read', { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: '{"all":true}' }));
    expect(await (await readAll()).json()).toEqual({ updated: body.unread });
    expect(await (await readAll()).json()).toEqual({ updated: 0 });
    const missing = await handler(new Request('http://app.local/api/other', { headers: { authorization: `Bearer ${token}` } }));
    expect(missing.status).toBe(404);
    await appDb.destroy();
  });

  it('503 when the database is unreachable: the client hears it is unavailable, the server is told why', async () => {
    const dead = createDb('postgres://nobody@127.0.0.1:1/none');
    try {
      const errors: Error[] = [];
      const handler = alertsHandler({ db: dead, key: secretKey(SECRET), allowedOrigins: [], maxReplay: 100, onError: (e) => errors.push(e) });
      const res = await handler(new Request('http://app.local/alerts', { headers: { authorization: `Bearer ${await tokenFor('carol')}` } }));
      expect(res.status).toBe(503);
      // The database's own text (hosts, roles, tables) never reaches the client.
      expect(((await res.json()) as any).message).toBe('the database is unavailable; retry shortly');
      expect(errors.map((e) => e.message).join('\n')).toMatch(/ECONNREFUSED/);
    } finally {
      await dead.destroy();
    }
  });
});
