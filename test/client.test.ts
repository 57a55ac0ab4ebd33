/**
 * pgbell/client in Node, against a real daemon and a real /alerts server (as an app would mount
 * it), over real sockets (the `ws` package stands in for the browser's WebSocket).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { secretKey } from '../src/auth.js';
import { EventSource } from 'eventsource';
import { backoffDelay, PgbellClient, tokenExpiry, type EventSourceConstructor, type SocketConstructor, type Status } from '../src/client/index.js';
import { createDb, type Db } from '../src/db/connect.js';
import { alertsHandler } from '../src/server/alerts.js';
import { handleWithFetch } from '../src/server/node.js';
import { SECRET, startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { until } from './helpers/tab.js';

let db: string;
let kdb: Db;
let app: http.Server;
let appUrl: string;

beforeAll(async () => {
  db = await freshDatabase(['ann', 'ben', 'cat']);
  kdb = createDb(db);
  const handler = alertsHandler({ db: kdb, key: secretKey(SECRET), allowedOrigins: [], maxReplay: 1000 });
  app = http.createServer((req, res) => void handleWithFetch(req, res, handler));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}/alerts`;
});
afterAll(async () => {
  await new Promise((r) => app?.close(r));
  await kdb?.destroy();
});

const WS = WebSocket as unknown as SocketConstructor;

describe('backoff', () => {
  it('full jitter over 500 ms · 2^attempt, capped at 30 s', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7, 10].map((a) => backoffDelay(a, 500, 30_000, () => 0.999999)).map(Math.round)).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    expect(backoffDelay(3, 500, 30_000, () => 0)).toBe(0);
    expect(backoffDelay(2, 500, 30_000, () => 0.5)).toBe(1000);
  });

  it('with fake timers: reconnect attempts follow the schedule while the server is unreachable, status offline without a poll URL', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      const attempts: number[] = [];
      const start = Date.now();
      class Counting extends WebSocket {
        constructor(url: string) {
          super(url);
          attempts.push(Date.now() - start);
        }
      }
      const statuses: Status[] = [];
      const client = new PgbellClient({ url: 'ws://127.0.0.1:1/', token: 't', WebSocket: Counting as unknown as SocketConstructor, random: () => 1, backoff: { baseMs: 500, capMs: 2000 } });
      client.on('status', (s) => statuses.push(s));
      client.on('error', () => {});
      await client.start();
      // Real sockets, fake clock: wait on I/O with setImmediate (not faked), never on setTimeout.
      const io = async (check: () => boolean) => {
        for (let i = 0; i < 200_000 && !check(); i++) await new Promise((r) => setImmediate(r));
        expect(check()).toBe(true);
      };
      await io(() => statuses.includes('offline'));
      expect(client.state.status).toBe('offline');
      expect(attempts).toHaveLength(1);
      for (const [wait, expected] of [[500, 2], [1000, 3], [2000, 4], [2000, 5]] as const) {
        // The refused connection closes (real I/O) and the client schedules its next attempt.
        await io(() => vi.getTimerCount() > 0);
        await vi.advanceTimersByTimeAsync(wait - 1);
        expect(attempts).toHaveLength(expected - 1);
        await vi.advanceTimersByTimeAsync(1);
        await io(() => attempts.length === expected);
        expect(attempts[expected - 1]! - attempts[expected - 2]!).toBe(wait);
      }
      client.stop();
      expect(statuses).toEqual(['offline']);
    } finally {
      vi.useRealTimers();
    }
  });

  it('tokenExpiry reads exp from a JWT and null from anything else', async () => {
    const t = await tokenFor('ann', { ttlSeconds: 120 });
    expect(tokenExpiry(t)).toBeGreaterThan(Date.now() / 1000 + 100);
    expect(tokenExpiry('nope')).toBeNull();
  });
});

describe('client against a daemon', () => {
  let daemon: TestDaemon | undefined;
  afterAll(async () => daemon?.stop());

  it('loads the list, goes live, falls back to polling when the daemon stops, goes live again when it returns: no gap, no duplicate', async () => {
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('ann', 'before start')`);
    daemon = await startTestDaemon(db);
    const port = daemon.port;
    const logs: string[] = [];
    const statuses: Status[] = [];
    let tokenCalls = 0;
    const client = new PgbellClient({
      url: daemon.url,
      pollUrl: appUrl,
      getToken: async () => {
        tokenCalls++;
        return tokenFor('ann', { email: 'ann@example.test' });
      },
      WebSocket: WS,
      pollIntervalMs: 150,
      backoff: { baseMs: 100, capMs: 400 },
      debug: true,
      logger: (...a) => logs.push(a.join(' ')),
    });
    client.on('status', (s) => statuses.push(s));
    await client.start();
    await until(() => client.state.status === 'live', 5000, 'live');
    expect(client.state.alerts.map((a) => a.title)).toEqual(['before start']);
    expect(client.state.unread).toBe(1);

    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('ann', 'live one'), ('ben', 'not ann''s')`);
    await until(() => client.state.alerts.length === 2, 5000, 'live alert');

    await daemon.stop();
    await until(() => client.state.status === 'polling', 5000, 'polling');
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('ann', 'while the daemon is down')`);
    await until(() => client.state.alerts.some((a) => a.title === 'while the daemon is down'), 5000, 'alert by polling');
    expect(client.state.unread).toBe(3);

    daemon = await startTestDaemon(db, { port });
    await until(() => client.state.status === 'live', 10_000, 'live again');
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('ann', 'after return')`);
    await until(() => client.state.alerts.length === 4, 5000, 'alert after return');

    const ids = client.state.alerts.map((a) => a.id);
    expect(new Set(ids).size).toBe(ids.length);
    const truth = (await query(db, `SELECT id FROM "Alert" WHERE "userId" = 'ann' ORDER BY "createdAt" DESC, id DESC`)).map((r) => r.id);
    expect(new Set(ids)).toEqual(new Set(truth));
    expect(statuses).toEqual(['live', 'polling', 'live']);
    expect(tokenCalls).toBeGreaterThanOrEqual(2);
    expect(logs).toEqual(
      expect.arrayContaining([
        '✅ WebSocket connected, authenticating...',
        '✅ WebSocket authenticated: ann@example.test',
        '📬 Real-time notification received: live one',
        '🔌 WebSocket disconnected, using polling fallback',
        '📬 Notification received by polling: while the daemon is down',
      ]),
    );

    // markRead while live goes over the socket; the update comes back.
    await client.markRead([client.state.alerts[0]!.id]);
    expect(client.state.unread).toBe(3);
    await until(async () => (await query(db, `SELECT count(*)::int AS n FROM "Alert" WHERE "userId" = 'ann' AND NOT read`))[0]!.n === 3, 5000, 'read in the database');
    await client.markAllRead();
    expect(client.state.unread).toBe(0);
    await until(async () => (await query(db, `SELECT count(*)::int AS n FROM "Alert" WHERE "userId" = 'ann' AND NOT read`))[0]!.n === 0, 5000, 'all read in the database');
    client.stop();
  }, 60_000);

  it('getToken() is asked again before the token expires, and the open socket re-authenticates with it', async () => {
    daemon ??= await startTestDaemon(db);
    let calls = 0;
    const logs: string[] = [];
    const client = new PgbellClient({
      url: daemon.url,
      getToken: async () => {
        calls++;
        return tokenFor('ben', { email: `ben${calls}@example.test`, ttlSeconds: 4 });
      },
      refreshLeadMs: 2_500,
      WebSocket: WS,
      debug: true,
      logger: (...a) => logs.push(a.join(' ')),
    });
    await client.start();
    await until(() => logs.includes('✅ WebSocket authenticated: ben2@example.test'), 8000, 're-authentication with the second token');
    expect(calls).toBe(2);
    expect(client.state.status).toBe('live');
    client.stop();
  });

  it('subscribe(types) keeps only those types, in the list and live, with their unread count', async () => {
    daemon ??= await startTestDaemon(db);
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('cat', 'billing', 'b'), ('cat', 'security', 's')`);
    const client = new PgbellClient({ url: daemon.url, pollUrl: appUrl, token: await tokenFor('cat'), WebSocket: WS });
    await client.start();
    await until(() => client.state.status === 'live', 5000, 'live');
    expect(client.state.unread).toBe(2);
    await client.subscribe(['billing']);
    await until(() => client.state.unread === 1 && client.state.alerts.length === 1, 5000, 'filtered');
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('cat', 'security', 's2'), ('cat', 'billing', 'b2')`);
    await until(() => client.state.alerts.length === 2, 5000, 'b2');
    expect(client.state.alerts.map((a) => a.title)).toEqual(['b2', 'b']);
    expect(client.state.unread).toBe(2);
    client.stop();
  });

  it('stop() while getToken() is pending opens no socket (the React hook stops during a token fetch)', async () => {
    daemon ??= await startTestDaemon(db);
    let release!: (t: string) => void;
    const token = await tokenFor('ann');
    const client = new PgbellClient({ url: daemon.url, getToken: () => new Promise<string>((r) => (release = r)), WebSocket: WS });
    void client.start();
    await until(() => release !== undefined, 2000, 'token asked');
    client.stop();
    release(token);
    await new Promise((r) => setTimeout(r, 500));
    const held = (await (await fetch(`http://127.0.0.1:${daemon.port}/health`)).json()) as { connections: number; pendingAuth?: number };
    expect(held.connections).toBe(0);
    expect(client.state.status).not.toBe('live');
  });

  it('subscribe(types) called before synced reaches the server: the new filter holds live', async () => {
    daemon ??= await startTestDaemon(db);
    let opened!: () => void;
    const openedP = new Promise<void>((r) => (opened = r));
    class Watching extends WebSocket {
      constructor(url: string) {
        super(url);
        this.once('open', () => opened());
      }
    }
    const client = new PgbellClient({ url: daemon.url, token: await tokenFor('cat'), WebSocket: Watching as unknown as SocketConstructor });
    void client.start();
    await openedP; // auth sent, not synced yet
    expect(client.state.status).not.toBe('live');
    await client.subscribe(['security']);
    await until(() => client.state.status === 'live', 5000, 'live');
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('cat', 'billing', 'not wanted'), ('cat', 'security', 'wanted')`);
    await until(() => client.state.alerts.some((a) => a.title === 'wanted'), 5000, 'the security alert');
    await new Promise((r) => setTimeout(r, 200));
    expect(client.state.alerts.map((a) => a.title)).toEqual(['wanted']);
    client.stop();
  });

  it('polling after a 410 starts over from a fresh list and its cursor (one 410, not one per poll), and applies deletes', async () => {
    const own = await startTestDaemon(db);
    const statuses: number[] = [];
    const counting: typeof fetch = async (url, init) => {
      const res = await fetch(url, init);
      if (String(url).includes('after=')) statuses.push(res.status);
      return res;
    };
    const client = new PgbellClient({ url: own.url, pollUrl: appUrl, token: await tokenFor('ben'), WebSocket: WS, fetch: counting, pollIntervalMs: 100, backoff: { baseMs: 60_000, capMs: 60_000 } });
    await client.start();
    await until(() => client.state.status === 'live', 5000, 'live');
    await own.stop();
    await until(() => client.state.status === 'polling', 10_000, 'polling');
    // More changes than the handler's MAX_REPLAY (1000): the cursor is refused with 410.
    await query(db, `INSERT INTO "Alert" ("userId", title) SELECT 'ben', 'bulk ' || i FROM generate_series(1, 1001) i`);
    await until(() => statuses.includes(410), 5000, 'a 410');
    const keep = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('ben', 'keep') RETURNING id`))[0]!.id as string;
    await until(() => client.state.alerts.some((a) => a.id === keep), 5000, 'the next alert, by polling');
    await query(db, `DELETE FROM "Alert" WHERE id = $1`, [keep]);
    await until(() => !client.state.alerts.some((a) => a.id === keep), 5000, 'the delete, by polling');
    expect(statuses.filter((x) => x === 410)).toEqual([410]);
    client.stop();
  }, 30_000);

  it('polling reads what changed page by page (more: true) in one poll, with no 410 and nothing missed', async () => {
    const own = await startTestDaemon(db);
    const pages: Array<{ status: number; at: number }> = [];
    const counting: typeof fetch = async (url, init) => {
      const res = await fetch(url, init);
      if (String(url).includes('after=')) pages.push({ status: res.status, at: performance.now() });
      return res;
    };
    const client = new PgbellClient({ url: own.url, pollUrl: appUrl, token: await tokenFor('cat'), WebSocket: WS, fetch: counting, pollIntervalMs: 3000, backoff: { baseMs: 60_000, capMs: 60_000 } });
    await client.start();
    await until(() => client.state.status === 'live', 5000, 'live');
    await own.stop();
    await until(() => client.state.status === 'polling', 10_000, 'polling');
    // 900 transactions: fewer than MAX_REPLAY (1000), more than a page (500).
    await query(db, `DO $$ BEGIN FOR i IN 1..900 LOOP INSERT INTO "Alert" ("userId", title, type) VALUES ('cat', 'paged ' || i, 'paged'); COMMIT; END LOOP; END $$`);
    const want = (await query<{ id: string }>(db, `SELECT id FROM "Alert" WHERE "userId" = 'cat' AND type = 'paged'`)).map((r) => r.id);
    await until(() => want.every((id) => client.state.alerts.some((a) => a.id === id)), 20_000, 'every alert, by polling');
    expect(pages.every((p) => p.status === 200)).toBe(true);
    // Polls are 3 s apart: two requests within a second are one poll's pages.
    expect(pages.some((p, i) => i > 0 && p.at - pages[i - 1]!.at < 1000)).toBe(true);
    client.stop();
  }, 60_000);

  it('a list reload in flight does not bring back an alert a live delete removed meanwhile', async () => {
    daemon ??= await startTestDaemon(db);
    const doomed = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('ann', 'doomed') RETURNING id`))[0]!.id as string;
    let slow = false;
    let reloadSent!: () => void;
    const sent = new Promise<void>((r) => (reloadSent = r));
    const slowList: typeof fetch = async (url, init) => {
      if (slow && String(url).includes('limit=')) {
        const res = await fetch(url, init); // the list's snapshot is taken now: it has the alert
        reloadSent();
        await new Promise((r) => setTimeout(r, 500));
        return res;
      }
      return fetch(url, init);
    };
    const client = new PgbellClient({ url: daemon.url, pollUrl: appUrl, token: await tokenFor('ann'), WebSocket: WS, fetch: slowList });
    await client.start();
    await until(() => client.state.status === 'live' && client.state.alerts.some((a) => a.id === doomed), 5000, 'live with the alert');
    slow = true;
    const reload = client.subscribe([]);
    await sent;
    await query(db, `DELETE FROM "Alert" WHERE id = $1`, [doomed]);
    await until(() => !client.state.alerts.some((a) => a.id === doomed), 5000, 'the live delete');
    await reload;
    expect(client.state.alerts.some((a) => a.id === doomed)).toBe(false);
    client.stop();
  });

  it('transport auto: when the WebSocket cannot connect, it streams over SSE (state.transport), live, and marks read over HTTP', async () => {
    daemon ??= await startTestDaemon(db);
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('cat', 'listed')`);
    const transports: Array<string | null> = [];
    const client = new PgbellClient({
      url: 'ws://127.0.0.1:1/', // refused, as behind a proxy that drops upgrades
      streamUrl: `${daemon.http}/alerts/stream`,
      pollUrl: appUrl,
      token: await tokenFor('cat'),
      WebSocket: WS,
      EventSource: EventSource as unknown as EventSourceConstructor,
      backoff: { baseMs: 10, capMs: 50 },
    });
    client.on('change', (st) => transports.at(-1) !== st.transport && transports.push(st.transport));
    client.on('error', () => {});
    await client.start();
    await until(() => client.state.status === 'live', 10_000, 'live');
    expect(client.state.transport).toBe('sse');
    const id = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('cat', 'over sse') RETURNING id`))[0]!.id as string;
    await until(() => client.state.alerts.some((a) => a.id === id), 5000, 'the alert over SSE');
    await client.markRead([id]);
    await until(async () => (await query(db, `SELECT read FROM "Alert" WHERE id = $1`, [id]))[0]!.read === true, 5000, 'read in the database');
    expect(transports).toContain('sse');
    client.stop();
    await until(async () => (await (await fetch(`${daemon!.http}/health`)).json() as { connections: number }).connections === 0, 5000, 'stream closed');
  });
});

describe('older pages: loadMore()', () => {
  let daemon: TestDaemon | undefined;
  afterAll(async () => daemon?.stop());

  /** A user of its own with `n` alerts a second apart, oldest first; their ids newest first. */
  async function userWith(user: string, n: number): Promise<string[]> {
    await query(db, `INSERT INTO "User" (id, email) VALUES ($1, $1 || '@example.test')`, [user]);
    await query(db, `INSERT INTO "Alert" ("userId", title, "createdAt") SELECT $1, 'old ' || i, now() - make_interval(secs => i) FROM generate_series(1, $2::int) i`, [user, n]);
    return (await query(db, `SELECT id FROM "Alert" WHERE "userId" = $1 ORDER BY "createdAt" DESC, id DESC`, [user])).map((r) => r.id as string);
  }

  it('pages through the older alerts live (hasMore), and live updates, deletes and inserts reach the older pages too', async () => {
    daemon ??= await startTestDaemon(db);
    const ids = await userWith('dee', 8);
    const client = new PgbellClient({ url: daemon.url, pollUrl: appUrl, token: await tokenFor('dee'), WebSocket: WS, limit: 3 });
    await client.start();
    await until(() => client.state.status === 'live', 5000, 'live');
    expect(client.state.alerts.map((a) => a.id)).toEqual(ids.slice(0, 3));
    expect(client.state.hasMore).toBe(true);
    // An alert committed live that is older than every page must not become where paging starts.
    const backdated = (await query(db, `INSERT INTO "Alert" ("userId", title, "createdAt") VALUES ('dee', 'backdated', now() - interval '1 day') RETURNING id`))[0]!.id as string;
    await until(() => client.state.alerts.some((a) => a.id === backdated), 5000, 'the backdated alert, live');
    await Promise.all([client.loadMore(), client.loadMore()]); // one page, shared
    expect(client.state.alerts.map((a) => a.id)).toEqual([...ids.slice(0, 6), backdated]);
    expect(client.state.hasMore).toBe(true);
    await client.loadMore();
    expect(client.state.alerts.map((a) => a.id)).toEqual([...ids, backdated]);
    expect(client.state.hasMore).toBe(false);
    await client.loadMore(); // nothing more: no request, no change
    expect(client.state.alerts).toHaveLength(9);

    // The oldest loaded page changes live: an update and a delete of alerts the first list never had.
    await query(db, `UPDATE "Alert" SET title = 'renamed' WHERE id = $1`, [ids[7]]);
    await query(db, `DELETE FROM "Alert" WHERE id = $1`, [ids[6]]);
    await until(() => client.state.alerts.find((a) => a.id === ids[7])?.title === 'renamed' && !client.state.alerts.some((a) => a.id === ids[6]), 5000, 'the live update and delete of older alerts');
    const fresh = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('dee', 'new') RETURNING id`))[0]!.id as string;
    await until(() => client.state.alerts[0]?.id === fresh, 5000, 'a new alert on top');
    const truth = (await query(db, `SELECT id FROM "Alert" WHERE "userId" = 'dee' ORDER BY "createdAt" DESC, id DESC`)).map((r) => r.id);
    expect(client.state.alerts.map((a) => a.id)).toEqual(truth);
    client.stop();
  });

  it('while polling: polled changes reach the older pages, and a page whose last alert was deleted unseen still continues with no gap', async () => {
    const ids = await userWith('eve', 10);
    const client = new PgbellClient({ url: 'ws://127.0.0.1:1/', pollUrl: appUrl, token: await tokenFor('eve'), WebSocket: WS, limit: 4, pollIntervalMs: 100, backoff: { baseMs: 60_000, capMs: 60_000 } });
    client.on('error', () => {});
    await client.start();
    await until(() => client.state.status === 'polling', 5000, 'polling');
    await client.loadMore();
    expect(client.state.alerts.map((a) => a.id)).toEqual(ids.slice(0, 8));
    await query(db, `UPDATE "Alert" SET read = true WHERE id = $1`, [ids[7]]);
    await query(db, `DELETE FROM "Alert" WHERE id = $1`, [ids[5]]);
    await until(() => client.state.alerts.find((a) => a.id === ids[7])?.read === true && !client.state.alerts.some((a) => a.id === ids[5]), 5000, 'the polled update and delete of older alerts');
    client.stop();

    // A client that does not poll meanwhile: the last alert of its pages is deleted on the
    // server only (the next page's `before` is then unknown there).
    const quiet = new PgbellClient({ url: 'ws://127.0.0.1:1/', pollUrl: appUrl, token: await tokenFor('eve'), WebSocket: WS, limit: 3, pollIntervalMs: 600_000, backoff: { baseMs: 600_000, capMs: 600_000 } });
    quiet.on('error', () => {});
    await quiet.start();
    const held = quiet.state.alerts.map((a) => a.id);
    expect(held).toHaveLength(3);
    await query(db, `DELETE FROM "Alert" WHERE id = $1`, [held[2]]);
    await quiet.loadMore();
    await quiet.loadMore();
    const truth = (await query(db, `SELECT id FROM "Alert" WHERE "userId" = 'eve' ORDER BY "createdAt" DESC, id DESC`)).map((r) => r.id);
    expect(quiet.state.alerts.map((a) => a.id)).toEqual([held[0], held[1], held[2], ...truth.slice(2)]);
    expect(quiet.state.hasMore).toBe(false);
    quiet.stop();
  });
});

describe('a server that takes the socket and never answers', () => {
  it.each(['websocket', 'sse'] as const)('%s: without `synced` within syncTimeoutMs the client closes it and reconnects with backoff', async (transport) => {
    // Accepts the socket (or the stream's headers) and says nothing more, as a node that cannot
    // subscribe it would.
    const opened: Array<{ closed: boolean }> = [];
    const server = http.createServer((req, res) => {
      const conn = { closed: false };
      opened.push(conn);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': hello\n\n');
      req.on('close', () => (conn.closed = true));
    });
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => {
      const conn = { closed: false };
      opened.push(conn);
      ws.on('close', () => (conn.closed = true));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const client = new PgbellClient({
      url: `ws://127.0.0.1:${port}/`,
      streamUrl: `http://127.0.0.1:${port}/alerts/stream`,
      transport,
      EventSource: EventSource as unknown as EventSourceConstructor,
      token: await tokenFor('ann'),
      WebSocket: WS,
      syncTimeoutMs: 300,
      backoff: { baseMs: 50, capMs: 100 },
    });
    client.on('error', () => {});
    try {
      await client.start();
      await until(() => opened.length >= 3, 5000, `three connections (had ${opened.length})`);
      // Each one it gave up, it closed.
      await until(() => opened.slice(0, 2).every((c) => c.closed), 5000, 'the first two closed by the client');
      expect(client.state.status).not.toBe('live');
    } finally {
      client.stop();
      wss.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('the feed: markSeen, archive, unarchive and the counts', () => {
  let daemon: TestDaemon | undefined;
  afterAll(async () => daemon?.stop());

  type Counts = { unread: number; unseen: number; byType: Record<string, { unread: number; unseen: number }> };

  /** The list (not archived, newest first) and the counts, by a SELECT. */
  async function truth(user: string): Promise<{ ids: string[]; seen: string[]; counts: Counts }> {
    const muted: string[] = (await query(db, `SELECT coalesce((SELECT muted FROM pgbell.preference WHERE "userId" = $1), '{}') AS m`, [user]))[0]!.m;
    const rows = (await query(db, `SELECT id::text AS id, type, read, seen, archived FROM pgbell."Alert" WHERE "userId" = $1 AND NOT archived ORDER BY "createdAt" DESC, id DESC`, [user])).filter((r) => !muted.includes(r.type));
    const byType: Counts['byType'] = {};
    for (const r of rows) {
      if (r.read) continue;
      const t = (byType[r.type] ??= { unread: 0, unseen: 0 });
      t.unread++;
      if (!r.seen) t.unseen++;
    }
    const sum = (k: 'unread' | 'unseen') => Object.values(byType).reduce((n, t) => n + t[k], 0);
    return { ids: rows.map((r) => r.id), seen: rows.filter((r) => r.seen || r.read).map((r) => r.id).sort(), counts: { unread: sum('unread'), unseen: sum('unseen'), byType } };
  }

  const viewOf = (c: PgbellClient) => ({
    ids: c.state.alerts.map((a) => a.id),
    seen: c.state.alerts.filter((a) => a.seen || a.read).map((a) => a.id).sort(),
    counts: { unread: c.state.unread, unseen: c.state.unseen, byType: c.state.byType },
  });

  /** Every client shows what the tables hold: the same list, in order, and the same counts. */
  async function converged(user: string, clients: PgbellClient[], what: string): Promise<void> {
    const expected = await truth(user);
    try {
      await until(() => clients.every((c) => isDeepStrictEqual(viewOf(c), expected)), 5000, what);
    } catch (err) {
      for (const c of clients) expect(viewOf(c), what).toEqual(expected);
      throw err;
    }
  }

  async function userWithTypes(user: string): Promise<string[]> {
    await query(db, `INSERT INTO "User" (id, email) VALUES ($1, $1 || '@example.test')`, [user]);
    await query(db, `INSERT INTO "Alert" ("userId", type, title, "createdAt") SELECT $1, t, t || ' ' || i, now() - make_interval(secs => i) FROM unnest(ARRAY['billing','billing','security','general','billing']) WITH ORDINALITY AS x(t, i)`, [user]);
    return (await query(db, `SELECT id FROM "Alert" WHERE "userId" = $1 ORDER BY "createdAt" DESC, id DESC`, [user])).map((r) => r.id as string);
  }

  it('live: markSeen, markRead, archive and unarchive change the counts at once, stream to a second client, and both equal a SELECT', async () => {
    daemon ??= await startTestDaemon(db);
    const ids = await userWithTypes('fay');
    const make = async () => new PgbellClient({ url: daemon!.url, pollUrl: appUrl, token: await tokenFor('fay'), WebSocket: WS });
    const [a, b] = [await make(), await make()];
    const announced: string[] = [];
    for (const c of [a, b]) c.on('notification', (n) => announced.push(n.id));
    await Promise.all([a.start(), b.start()]);
    await until(() => a.state.status === 'live' && b.state.status === 'live', 5000, 'live');
    expect(a.state).toMatchObject({ unread: 5, unseen: 5, byType: { billing: { unread: 3, unseen: 3 }, security: { unread: 1, unseen: 1 }, general: { unread: 1, unseen: 1 } } });
    await converged('fay', [a, b], 'the first list');

    // Seen: at once in the client that asked (before the server answers), then everywhere.
    const seen = a.markSeen([ids[0]!, ids[2]!]);
    expect(a.state).toMatchObject({ unread: 5, unseen: 3, byType: { billing: { unread: 3, unseen: 2 }, security: { unread: 1, unseen: 0 } } });
    await seen;
    await converged('fay', [a, b], 'two seen');
    expect(b.state.alerts.find((x) => x.id === ids[0])?.seen).toBe(true);
    await a.markSeen('all');
    expect(a.state.unseen).toBe(0);
    await converged('fay', [a, b], 'all seen, unread unchanged');
    expect(b.state).toMatchObject({ unread: 5, unseen: 0 });

    // A new alert is unseen; reading it takes it out of both counts.
    const fresh = (await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('fay', 'security', 'new') RETURNING id`))[0]!.id as string;
    await until(() => b.state.unseen === 1 && a.state.unseen === 1, 5000, 'a new alert, unseen');
    await a.markRead([fresh]);
    expect(a.state).toMatchObject({ unread: 5, unseen: 0 });
    await converged('fay', [a, b], 'the new one read');

    // Archive: out of the list and the counts, in both.
    await a.markRead([ids[1]!]);
    const archiving = a.archive([ids[3]!]);
    expect(a.state.alerts.map((x) => x.id)).not.toContain(ids[3]);
    expect(a.state.byType.general).toBeUndefined();
    await archiving;
    await converged('fay', [a, b], 'one archived');
    expect(b.state.alerts.map((x) => x.id)).not.toContain(ids[3]);
    await a.archive({ read: true });
    expect(a.state.alerts.map((x) => x.id)).not.toContain(ids[1]);
    await converged('fay', [a, b], 'the read ones archived');
    expect(b.state.alerts.map((x) => x.id)).toEqual(expect.not.arrayContaining([ids[1], fresh]));
    const archived = await b.loadArchived();
    expect(archived.alerts.map((x) => x.id).sort()).toEqual([ids[1]!, ids[3]!, fresh].sort());
    expect(archived.more).toBe(false);
    expect((await b.loadArchived({ limit: 1 })).more).toBe(true);

    // Unarchive: back in both lists, in its place by date, and not announced as new.
    const before = announced.length;
    await b.unarchive([ids[3]!]);
    await converged('fay', [a, b], 'unarchived, in its place');
    expect(a.state.alerts.map((x) => x.id).indexOf(ids[3]!)).toBeGreaterThan(0);
    expect(announced.length).toBe(before);

    // A refusal (an id of another user's) changes nothing on the server, and the client shows it again.
    const other = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('ann', 'not fay''s') RETURNING id`))[0]!.id as string;
    const shown = viewOf(a);
    await expect(a.archive([ids[0]!, other])).rejects.toThrow(/404 unknown_alert/);
    expect(viewOf(a)).toEqual(shown);
    await expect(a.markSeen([other])).rejects.toThrow(/404 unknown_alert/);
    await converged('fay', [a, b], 'nothing changed by the refusals');

    // A state change by SQL (a cron job) streams like any other.
    await query(db, `SELECT pgbell.archive('fay', ARRAY[$1])`, [ids[0]]);
    await converged('fay', [a, b], 'archived by SQL');
    await a.archive('all');
    expect(a.state).toMatchObject({ alerts: [], unread: 0, unseen: 0, byType: {} });
    await converged('fay', [a, b], 'all archived');
    expect(b.state.alerts).toEqual([]);
    a.stop();
    b.stop();
  });

  it('polling: archived and unarchived alerts leave and rejoin the list from ?after= pages, with the counts; its own change is polled at once', async () => {
    daemon ??= await startTestDaemon(db);
    const ids = await userWithTypes('gus');
    const live = new PgbellClient({ url: daemon.url, pollUrl: appUrl, token: await tokenFor('gus'), WebSocket: WS });
    const polling = new PgbellClient({ url: 'ws://127.0.0.1:1/', pollUrl: appUrl, token: await tokenFor('gus'), WebSocket: WS, pollIntervalMs: 200, backoff: { baseMs: 60_000, capMs: 60_000 } });
    polling.on('error', () => {});
    await Promise.all([live.start(), polling.start()]);
    await until(() => live.state.status === 'live' && polling.state.status === 'polling', 5000, 'one live, one polling');
    await converged('gus', [live, polling], 'the first list');

    await live.archive([ids[0]!, ids[4]!]);
    await live.markSeen([ids[1]!]);
    await converged('gus', [live, polling], 'archived and seen, polled');
    await query(db, `SELECT pgbell.unarchive('gus', ARRAY[$1])`, [ids[4]]);
    await converged('gus', [live, polling], 'unarchived by SQL, polled back into its place');
    expect(polling.state.alerts.at(-1)?.id).toBe(ids[4]);

    // The polling client's own change: shown at once, and confirmed by a poll at once (not in 60 s).
    const slow = new PgbellClient({ url: 'ws://127.0.0.1:1/', pollUrl: appUrl, token: await tokenFor('gus'), WebSocket: WS, pollIntervalMs: 60_000, backoff: { baseMs: 60_000, capMs: 60_000 } });
    slow.on('error', () => {});
    await slow.start();
    await until(() => slow.state.status === 'polling', 5000, 'polling');
    await slow.unarchive([ids[0]!]);
    await converged('gus', [live, polling, slow], 'unarchived by the polling client, polled at once');
    for (const c of [live, polling, slow]) c.stop();
  });

  it('setMuted: the muted type leaves the list and the counts at once, in a live and a polling client; unmuted, it comes back', async () => {
    daemon ??= await startTestDaemon(db);
    const ids = await userWithTypes('hal');
    const live = new PgbellClient({ url: daemon.url, pollUrl: appUrl, token: await tokenFor('hal'), WebSocket: WS });
    const polling = new PgbellClient({ url: 'ws://127.0.0.1:1/', pollUrl: appUrl, token: await tokenFor('hal'), WebSocket: WS, pollIntervalMs: 200, backoff: { baseMs: 60_000, capMs: 60_000 } });
    polling.on('error', () => {});
    await Promise.all([live.start(), polling.start()]);
    await until(() => live.state.status === 'live' && polling.state.status === 'polling', 5000, 'one live, one polling');
    expect(live.state.muted).toBeNull();
    await live.loadMuted();
    expect(live.state.muted).toEqual([]);

    await live.setMuted(['billing']);
    // As soon as the server has answered: no billing alert, no billing count.
    expect(live.state.alerts.map((a) => a.type)).toEqual(['security', 'general']);
    expect(live.state).toMatchObject({ unread: 2, unseen: 2, byType: { security: { unread: 1, unseen: 1 }, general: { unread: 1, unseen: 1 } } });
    expect(live.state.byType.billing).toBeUndefined();
    await converged('hal', [live, polling], 'billing muted');
    expect(polling.state.muted).toEqual(['billing']);
    // A muted type's new alert is neither listed nor counted.
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('hal', 'billing', 'muted'), ('hal', 'security', 'not muted')`);
    await converged('hal', [live, polling], 'a new muted alert left out');

    await polling.setMuted([]);
    await converged('hal', [live, polling], 'unmuted: billing back, in its place');
    expect(live.state.alerts.map((a) => a.id)).toEqual(expect.arrayContaining(ids));
    expect(live.state.muted).toEqual([]);
    for (const c of [live, polling]) c.stop();
  });

  it('without pollUrl, markSeen, archive, unarchive and loadArchived say they need it', async () => {
    const c = new PgbellClient({ url: 'ws://127.0.0.1:1/', token: 't', WebSocket: WS });
    await expect(c.markSeen('all')).rejects.toThrow(/pollUrl/);
    await expect(c.archive(['1'])).rejects.toThrow(/pollUrl/);
    await expect(c.unarchive(['1'])).rejects.toThrow(/pollUrl/);
    await expect(c.loadArchived()).rejects.toThrow(/pollUrl/);
  });
});

describe('muted types: an unmute, then a mute while the unmute\'s list reload is in flight', () => {
  let daemon: TestDaemon | undefined;
  afterAll(async () => daemon?.stop());
  it('ends with no muted alert in the list and the counts of a SELECT', async () => {
    const db = await freshDatabase(['zed']);
    daemon = await startTestDaemon(db);
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('zed', 'billing', 'b1'), ('zed', 'billing', 'b2'), ('zed', 'security', 's1')`);
    await query(db, `SELECT pgbell.set_muted('zed', ARRAY['billing'])`);
    let armed = false;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let held = 0;
    const f: typeof fetch = async (input, init) => {
      const url = String(input);
      const res = await fetch(input, init);
      if (armed && url.includes('?limit=')) {
        held++;
        await gate;
      }
      return res;
    };
    const client = new PgbellClient({ url: daemon.url, pollUrl: `${daemon.http}/alerts`, token: await tokenFor('zed'), WebSocket: WS, fetch: f });
    client.on('error', () => {});
    await client.start();
    await until(() => client.state.status === 'live' && client.state.alerts.length === 1, 5000, 'live with s1');
    await client.loadMuted();
    expect(client.state.muted).toEqual(['billing']);
    armed = true;
    await query(db, `SELECT pgbell.set_muted('zed', '{}')`);
    await until(() => held === 1, 5000, 'the reload after the unmute, answered and held');
    await query(db, `SELECT pgbell.set_muted('zed', ARRAY['billing'])`);
    await until(() => JSON.stringify(client.state.muted) === '["billing"]', 5000, 'the mute again');
    release();
    await new Promise((r) => setTimeout(r, 1000));
    // Before: the held reload put b1 and b2 back, with unread 3 (the database says 1).
    expect(client.state.alerts.map((a) => a.type)).toEqual(['security']);
    expect(client.state.unread).toBe(1);
    client.stop();
  });
});
