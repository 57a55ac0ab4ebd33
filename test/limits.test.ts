/** What one client may cost: origins, connection caps, message rate, and slow consumers. */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import WebSocket from 'ws';
import { TestClient } from './helpers/client.js';
import { DEFAULT_LIMITS } from '../src/server/server.js';
import { cleanEnv, run } from './helpers/cli.js';
import { daemonFleet, startTestDaemon, tokenFor } from './helpers/daemon.js';
import { createUser, freshDatabase, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let db: string;

beforeAll(async () => {
  db = await freshDatabase(['ana', 'bo', 'cy', 'di']);
});
afterAll(async () => {
  await fleet.stopAll();
});

const fleet = daemonFleet(() => db);
const dbNotify = () => db;
const daemonWith = fleet.start;

/** The HTTP status of a refused handshake, or 101 if it was accepted. */
function handshake(url: string, origin?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, origin ? { origin } : {});
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', (err) => (String(err).includes('Unexpected server response') ? undefined : reject(err)));
  });
}

describe('origin allow-list', () => {
  it('a page from another origin gets HTTP 403 before any upgrade; allowed origins, localhost ports by pattern, and non-browser clients get in', async () => {
    const d = await daemonWith({ socketOrigins: ['https://app.example.test', 'http://localhost:*'] });
    expect(await handshake(d.url, 'https://evil.example')).toBe(403);
    expect(await handshake(d.url, 'https://app.example.test.evil.example')).toBe(403);
    expect(await handshake(d.url, 'http://localhost:3007')).toBe(101);
    expect(await handshake(d.url, 'http://localhost:3007.evil.example')).toBe(403);
    expect(await handshake(d.url, 'https://app.example.test')).toBe(101);
    expect(await handshake(d.url)).toBe(101); // no Origin header: not a browser page
    expect(d.logs.messages()).toContain('refused a WebSocket handshake from origin https://evil.example');
  });
});

describe('connection caps', () => {
  it('MAX_CONNECTIONS_PER_USER: the newest socket beyond it gets 4409; the others keep working', async () => {
    const d = await daemonWith({ limits: { maxPerUser: 2 } });
    const [a, b] = [await TestClient.ready(d.url, await tokenFor('ana')), await TestClient.ready(d.url, await tokenFor('ana'))];
    const c = await TestClient.connect(d.url);
    c.send({ type: 'auth', token: await tokenFor('ana') });
    expect(await c.closed).toEqual({ code: 4409, reason: 'too_many_connections' });
    expect(c.messages).toEqual([{ type: 'error', code: 'too_many_connections', message: 'Too many connections for this user' }]);
    const other = await TestClient.ready(d.url, await tokenFor('bo'));
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('ana', 'still served')`);
    for (const x of [a, b]) expect((await x.next((m) => m.type === 'notification')).alert.title).toBe('still served');
    for (const x of [a, b, other]) x.close();
  });

  it('MAX_CONNECTIONS → 1013; MAX_UNAUTHENTICATED idle sockets cannot starve an authenticated user', async () => {
    const d = await daemonWith({ limits: { maxConnections: 4, maxUnauthenticated: 2, maxWaitMs: 300 } });
    const idle = [await TestClient.connect(d.url), await TestClient.connect(d.url)];
    // Beyond the cap a handshake waits for a place; none comes free in time: 1013.
    const t0 = Date.now();
    const third = await TestClient.connect(d.url);
    expect(await third.closed).toEqual({ code: 1013, reason: 'server_full' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    // An idle flood is capped at 2, so a real user still gets in.
    idle[0]!.send({ type: 'auth', token: await tokenFor('cy') });
    await idle[0]!.next((m) => m.type === 'synced');
    const user = await TestClient.ready(d.url, await tokenFor('cy'));
    const fifth = await TestClient.connect(d.url);
    fifth.send({ type: 'auth', token: await tokenFor('cy') });
    // 4 sockets are open (2 authenticated, 1 idle, this one would be the 5th... it is the 4th): accepted.
    await fifth.next((m) => m.type === 'synced');
    const sixth = await TestClient.connect(d.url);
    expect((await sixth.closed).code).toBe(1013);
    for (const x of [...idle, user, fifth]) x.close();
  });

  it('beyond MAX_UNAUTHENTICATED a handshake waits for a place instead of being refused: a reconnect burst all gets in, in order, the cap never exceeded', async () => {
    const d = await daemonWith({ limits: { maxUnauthenticated: 2, maxWaitMs: 10_000 } });
    const health = async () => (await (await fetch(`${d.http}/health`)).json()) as { pendingAuth: number; waiting: number };
    // Two idle sockets hold both places: a third waits, not upgraded yet.
    const idle = [await TestClient.connect(d.url), await TestClient.connect(d.url)];
    const opened: number[] = [];
    const third = new WebSocket(d.url);
    third.once('open', () => opened.push(3));
    await until(async () => (await health()).waiting === 1, 5000, 'the third handshake waiting');
    expect(opened).toEqual([]);
    expect((await health()).pendingAuth).toBe(2);
    // One authenticates: its place goes to the waiting one.
    idle[0]!.send({ type: 'auth', token: await tokenFor('di') });
    await idle[0]!.next((m) => m.type === 'synced');
    await until(() => opened.length === 1, 5000, 'the third upgraded');
    third.close();
    // A burst of 12, each authenticating as soon as it is in: every one is served, none refused.
    let peak = 0;
    const sampler = setInterval(async () => (peak = Math.max(peak, (await health()).pendingAuth)), 5);
    const token = await tokenFor('di');
    const burst = await Promise.all(
      Array.from({ length: 12 }, () =>
        TestClient.connect(d.url).then(async (c) => {
          c.send({ type: 'auth', token });
          await c.next((m) => m.type === 'synced');
          return c;
        }),
      ),
    );
    clearInterval(sampler);
    expect(burst).toHaveLength(12);
    expect(peak).toBeLessThanOrEqual(2);
    expect(d.logs.messages().filter((m) => m.startsWith('refused a WebSocket'))).toEqual([]);
    for (const c of [...idle, ...burst]) c.close();
  });

  it('the waiting room is bounded: waiting handshakes count toward MAX_CONNECTIONS, and one that gives up leaves no trace', async () => {
    const d = await daemonWith({ limits: { maxConnections: 3, maxUnauthenticated: 1, maxWaitMs: 10_000 } });
    const health = async () => (await (await fetch(`${d.http}/health`)).json()) as { pendingAuth: number; waiting: number };
    const idle = await TestClient.connect(d.url);
    // Two may wait (1 open + 2 waiting = MAX_CONNECTIONS); the next is refused at once.
    const waiters = [new WebSocket(d.url), new WebSocket(d.url)];
    for (const w of waiters) w.on('error', () => {});
    await until(async () => (await health()).waiting === 2, 5000, 'two waiting');
    const t0 = Date.now();
    const over = await TestClient.connect(d.url);
    expect(await over.closed).toEqual({ code: 1013, reason: 'server_full' });
    expect(Date.now() - t0).toBeLessThan(2000);
    // The waiters give up: the room is empty again, and the next one waits in its place.
    for (const w of waiters) w.terminate();
    await until(async () => (await health()).waiting === 0, 5000, `the waiters gone (${JSON.stringify(await health())})`);
    const next = new WebSocket(d.url);
    next.on('error', () => {});
    await until(async () => (await health()).waiting === 1, 5000, `the next one waiting (${JSON.stringify(await health())})`);
    let nextOpen = false;
    next.once('open', () => (nextOpen = true));
    idle.close();
    await until(() => nextOpen, 5000, 'the next one in once the idle socket went');
    next.close();
  });
});

describe('message rate', () => {
  it('one address cannot hold the whole unauthenticated budget: its sockets beyond MAX_UNAUTHENTICATED_PER_ADDRESS get 1013, a newcomer from elsewhere gets in (X-Forwarded-For trusted one hop)', async () => {
    const d = await daemonWith({ limits: { maxUnauthenticated: 8, maxUnauthenticatedPerAddress: 5 }, trustProxyHops: 1 });
    const from = (addr: string) => ({ headers: { 'x-forwarded-for': `10.9.9.9, ${addr}` } });
    const idle: TestClient[] = [];
    for (let i = 0; i < 8; i++) idle.push(await TestClient.connect(d.url, from('203.0.113.5')));
    const codes = await Promise.all(idle.slice(5).map(async (c) => (await c.closed).code));
    expect(codes).toEqual([1013, 1013, 1013]);
    const newcomer = await TestClient.connect(d.url, from('198.51.100.7'));
    newcomer.send({ type: 'auth', token: await tokenFor('ana') });
    await newcomer.next((m) => m.type === 'synced');
    for (const c of [...idle, newcomer]) c.close();
  });

  it('a socket that never authenticates is cut at AUTH_TIMEOUT_MS even if it ignores the close handshake', async () => {
    const d = await daemonWith({ authTimeoutMs: 300 });
    const { port } = new URL(d.url);
    const sock = net.connect(Number(port), '127.0.0.1');
    sock.write(['GET / HTTP/1.1', `Host: 127.0.0.1:${port}`, 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13', '', ''].join('\r\n'));
    sock.on('data', () => {}); // reads, never answers the close frame
    const t0 = Date.now();
    await new Promise<void>((resolve) => sock.once('close', () => resolve()));
    expect(Date.now() - t0).toBeLessThan(5000); // not ws's 30 s close-handshake wait
    const h = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as { pendingAuth?: number };
    expect(h.pendingAuth ?? 0).toBe(0);
  });

  it('more than RATE_LIMIT messages in RATE_WINDOW_MS: an error, then close 4429', async () => {
    const d = await daemonWith({ limits: { rateLimit: 5, rateWindowMs: 60_000 } });
    const c = await TestClient.ready(d.url, await tokenFor('di')); // the auth message counts: 1
    for (let i = 0; i < 6; i++) c.send({ type: 'ping' });
    expect(await c.closed).toEqual({ code: 4429, reason: 'rate_limited' });
    expect(c.of('pong').length).toBeLessThanOrEqual(4); // the close may overtake replies still queued
    expect(c.messages.at(-1)).toEqual({ type: 'error', code: 'rate_limited', message: 'Too many messages' });
  });
});

describe('slow consumers', () => {
  it.each(['notify', 'wal'] as const)('%s mode: a client that stops reading while 5,000 alerts are written is closed at the buffer bound (4008), then resumes and ends with every alert', async (mode) => {
    const bound = 256 * 1024;
    // WAL mode on a database of its own, migrated for it.
    const db = mode === 'notify' ? dbNotify() : await freshDatabase();
    if (mode === 'wal') expect((await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'wal' }))).code).toBe(0);
    const d = mode === 'notify' ? await daemonWith({ limits: { maxBufferedBytes: bound } }) : await startTestDaemon(db, { mode, limits: { ...DEFAULT_LIMITS, maxBufferedBytes: bound } });
    await createUser(db, 'slow');
    const tab = await new Tab(await tokenFor('slow')).connect(d.url);
    // Stop reading: the kernel buffers fill, then the daemon's own send buffer would grow.
    const socket = (tab.client!.ws as unknown as { _socket: import('node:net').Socket })._socket;
    socket.pause();
    const writer = new pg.Client({ connectionString: db });
    await writer.connect();
    const message = 'x'.repeat(2000);
    for (let i = 0; i < 50; i++) {
      await writer.query(`INSERT INTO "Alert" ("userId", title, message) SELECT 'slow', 'n' || g, $1 FROM generate_series(${i * 100}, ${i * 100 + 99}) g`, [message]);
    }
    await writer.end();
    await until(() => d.logs.messages().some((m) => m.startsWith('closed a slow consumer of user slow')), 20_000, 'the slow-consumer close');
    const line = d.logs.lines.find((l) => String(l.msg).startsWith('closed a slow consumer'))!;
    // Checked before every send: the buffer never holds more than the bound plus one frame.
    expect(line.buffered as number).toBeLessThanOrEqual(bound + 4096);
    socket.resume();
    const closed = await tab.client!.closed;
    expect([4008, 1006]).toContain(closed.code);
    await tab.connect(d.url, 30_000);
    await until(() => tab.ids.size >= 5000, 30_000, `all 5000 (have ${tab.ids.size})`);
    const truth = new Set((await query(db, `SELECT id FROM "Alert" WHERE "userId" = 'slow'`)).map((r) => r.id));
    expect(tab.ids).toEqual(truth);
    expect(tab.repeatsWithinConnection).toEqual([]);
    // The 10 MB backlog did not fit the bound either: the replay paused for the socket to drain
    // instead of closing it again.
    expect(d.logs.messages().some((m) => m.startsWith('paused a replay to user slow until its socket drains'))).toBe(true);
    tab.close();
    if (mode === 'wal') await d.stop();
  }, 90_000);
});
