/**
 * pgbell/client in Node, against a real daemon and a real /alerts server (as an app would mount
 * it), over real sockets (the `ws` package stands in for the browser's WebSocket).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
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
