/** /health tells the truth: real socket counts, and 503 while the listener is not connected. */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DEFAULT_LIMITS } from '../src/server/server.js';
import { TestClient } from './helpers/client.js';
import { health, startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, psql, query } from './helpers/pg.js';

let db: string;
let dbName: string;
let daemon: TestDaemon;
const admin = () => inject('pg').adminUrl;

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms; last value ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

beforeAll(async () => {
  db = await freshDatabase(['alice', 'bob']);
  dbName = new URL(db).pathname.slice(1);
  daemon = await startTestDaemon(db);
});
afterAll(async () => {
  await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`).catch(() => {});
  await daemon?.stop();
});

describe('/health', () => {
  it('reports ok, an ISO timestamp, the listener state and the number of authenticated sockets', async () => {
    const h0 = await health(daemon.http);
    expect(h0.status).toBe(200);
    expect(h0.body).toMatchObject({ status: 'ok', connections: 0, listener: { state: 'connected', channel: 'pgbell' } });
    expect(new Date(h0.body.timestamp).toISOString()).toBe(h0.body.timestamp);

    const a1 = await TestClient.ready(daemon.url, await tokenFor('alice'));
    const a2 = await TestClient.ready(daemon.url, await tokenFor('alice'));
    const b1 = await TestClient.ready(daemon.url, await tokenFor('bob'));
    const pending = await TestClient.connect(daemon.url); // connected, not authenticated
    await eventually(() => health(daemon.http), (h) => h.body.pendingAuth === 1);
    expect((await health(daemon.http)).body.connections).toBe(3);

    a1.close();
    b1.close();
    await eventually(() => health(daemon.http), (h) => h.body.connections === 1);
    a2.close();
    pending.close();
    await eventually(() => health(daemon.http), (h) => h.body.connections === 0 && h.body.pendingAuth === 0);
  });

  it('the listener is visible in pg_stat_activity as pgbell-listener', async () => {
    const rows = await query(admin(), `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgbell-listener' AND datname = $1`, [dbName]);
    expect(rows[0]!.n).toBe(1);
  });

  it('goes 503 degraded when the listener backend is killed, and back to 200 when it reconnects; delivery resumes', async () => {
    const a = await TestClient.ready(daemon.url, await tokenFor('alice'));
    // Keep the listener out while we look, so the degraded window is not a race.
    await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS false`);
    const killed = await query(admin(), `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'pgbell-listener' AND datname = $1`, [dbName]);
    expect(killed.map((r) => r.ok)).toEqual([true]);

    const down = await eventually(() => health(daemon.http), (h) => h.status === 503);
    expect(down.body).toMatchObject({ status: 'degraded', listener: { state: 'reconnecting' } });

    await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`);
    const up = await eventually(() => health(daemon.http), (h) => h.status === 200, 15_000);
    expect(up.body).toMatchObject({ status: 'ok', listener: { state: 'connected', reconnects: 1 } });

    await psql(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'after reconnect')`);
    expect((await a.count('notification', 1))[0].alert.title).toBe('after reconnect');
    a.close();
  });
});

describe('row reads', () => {
  it('a read that fails (no connection to be had) is retried until it succeeds; the alert arrives', async () => {
    const a = await TestClient.ready(daemon.url, await tokenFor('alice'));
    const writer = new pg.Client({ connectionString: db });
    await writer.connect();
    try {
      await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS false`);
      await query(admin(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgbell' AND datname = $1`, [dbName]);
      await writer.query(`INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'read after retry')`);
      await eventually(async () => daemon.logs.messages().filter((m) => m === 'reading alerts failed; retrying').length, (n) => n >= 2);
      expect(a.alerts()).toEqual([]);
      await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`);
      expect((await a.next((m) => m.type === 'notification', 10_000)).alert.title).toBe('read after retry');
    } finally {
      await query(admin(), `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`);
      await writer.end();
      a.close();
    }
  });
});

describe('heartbeat', () => {
  it('a socket that stops answering pings is terminated and forgotten; one that answers stays', async () => {
    const d = await startTestDaemon(db, { heartbeatMs: 150 });
    try {
      const token = await tokenFor('alice');
      const silent = await TestClient.connect(d.url, { autoPong: false });
      silent.send({ type: 'auth', token });
      await silent.next((m) => m.type === 'ready');
      const healthy = await TestClient.ready(d.url, token);
      expect((await health(d.http)).body.connections).toBe(2);

      // RFC 6455 abnormal closure: the server dropped the TCP connection without a close frame.
      expect((await silent.closed).code).toBe(1006);
      await eventually(() => health(d.http), (h) => h.body.connections === 1);
      expect(d.logs.messages()).toContain('terminated a WebSocket that missed its pong');

      await new Promise((r) => setTimeout(r, 500)); // several more heartbeats
      expect(healthy.ws.readyState).toBe(healthy.ws.OPEN);
      await psql(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'to the healthy one')`);
      expect((await healthy.next((m) => m.type === 'notification')).alert.title).toBe('to the healthy one');
      healthy.close();
    } finally {
      await d.stop();
    }
  });

  it('a heartbeat tick pings its share of the interval, not a twentieth of every socket: no burst of pings holds the event loop', async () => {
    // 200 sockets, a 3 s interval: 4 pings every 50 ms (not 10 at once every 150 ms).
    const d = await startTestDaemon(db, { heartbeatMs: 3000, limits: { ...DEFAULT_LIMITS, maxPerUser: 300, userRateLimit: 0 } });
    try {
      const token = await tokenFor('alice');
      const sockets: TestClient[] = [];
      for (let i = 0; i < 200; i += 50) sockets.push(...(await Promise.all(Array.from({ length: 50 }, () => TestClient.ready(d.url, token)))));
      const pings: number[] = [];
      for (const s of sockets) s.ws.on('ping', () => pings.push(performance.now()));
      // The first pass ran before the sockets came; the next starts within the interval.
      await new Promise((r) => setTimeout(r, 4000));
      pings.sort((a, b) => a - b);
      expect(pings.length).toBeGreaterThanOrEqual(50);
      // Never more than 5 within 10 ms.
      for (let i = 5; i < pings.length; i++) expect(pings[i]! - pings[i - 5]!).toBeGreaterThan(10);
      for (const s of sockets) s.close();
    } finally {
      await d.stop();
    }
  });

  it('pings are spread over the heartbeat interval, not sent to every socket at once', async () => {
    const d = await startTestDaemon(db, { heartbeatMs: 1000, limits: { ...DEFAULT_LIMITS, maxPerUser: 100, userRateLimit: 0 } });
    try {
      const token = await tokenFor('alice');
      const sockets = await Promise.all(Array.from({ length: 40 }, () => TestClient.ready(d.url, token)));
      const firstPing = await Promise.all(sockets.map((s) => new Promise<number>((resolve) => s.ws.once('ping', () => resolve(performance.now())))));
      const spread = Math.max(...firstPing) - Math.min(...firstPing);
      // One pass is 20 ticks of 50 ms; all at once would be a few ms.
      expect(spread).toBeGreaterThan(400);
      // And every socket, answering, stays.
      await new Promise((r) => setTimeout(r, 1500));
      expect(sockets.every((s) => s.ws.readyState === s.ws.OPEN)).toBe(true);
      for (const s of sockets) s.close();
    } finally {
      await d.stop();
    }
  });
});
