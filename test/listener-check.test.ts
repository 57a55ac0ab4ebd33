/**
 * A listener that checks itself: the NOTIFY round-trip probe at start (a LISTEN that hears
 * nothing fails loudly), a half-open connection found within a heartbeat, and the NOTIFY queue
 * usage in /health.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StartupError } from '../src/daemon/daemon.js';
import { Tab, until } from './helpers/tab.js';
import { health, startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';

let db: string;
let other: string;
const daemons: TestDaemon[] = [];

beforeAll(async () => {
  db = await freshDatabase(['ivy']);
  other = await freshDatabase();
});
afterAll(async () => {
  for (const d of daemons) await d.stop();
});

/** A TCP proxy to Postgres that can freeze the connections it holds: they stay open, nothing passes. */
async function proxyTo(url: string) {
  const target = new URL(url);
  const pairs: Array<[net.Socket, net.Socket]> = [];
  const all: net.Socket[] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    pairs.push([client, upstream]);
    all.push(client, upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const proxied = new URL(url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String((server.address() as net.AddressInfo).port);
  return {
    url: proxied.toString(),
    /** Half-open: the connections stay up, but nothing gets through any more. */
    freeze() {
      for (const [c, u] of pairs.splice(0)) {
        c.unpipe(u);
        u.unpipe(c);
        c.pause();
        u.pause();
      }
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of all) s.destroy();
      }),
  };
}

describe('listener self-check', () => {
  it('a LISTEN that does not hear the database (here: another database, as behind a transaction pooler) fails start-up, saying so', async () => {
    const err = await startTestDaemon(db, { listenDatabaseUrl: other }).then(
      (d) => {
        daemons.push(d);
        return null;
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StartupError);
    expect((err as Error).message).toMatch(/^LISTEN does not receive notifications sent to the database: .*transaction-mode pooler.*LISTEN_DATABASE_URL/);
  });

  it('/health reports the probe and pg_notification_queue_usage()', async () => {
    const d = await startTestDaemon(db);
    daemons.push(d);
    const h = await health(d.http);
    expect(h.status).toBe(200);
    expect(h.body.listener.probe).toEqual({ ok: true, at: expect.any(String) });
    expect(h.body.notifyQueueUsage).toBeGreaterThanOrEqual(0);
    expect(h.body.notifyQueueUsage).toBeLessThan(0.5);
  });

  it('a half-open listener connection is found within a heartbeat; the listener reconnects and catches up what was written meanwhile', async () => {
    const proxy = await proxyTo(db);
    const heartbeatMs = 1000;
    const d = await startTestDaemon(db, { listenDatabaseUrl: proxy.url, heartbeatMs });
    daemons.push(d);
    const tab = await new Tab(await tokenFor('ivy')).connect(d.url);
    const frozenAt = Date.now();
    proxy.freeze();
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('ivy', 'while half-open')`);
    await until(() => d.logs.messages().includes('listener lost its Postgres connection; reconnecting'), 5000, 'detection');
    const detectedMs = Date.now() - frozenAt;
    console.log(`half-open listener connection detected after ${detectedMs} ms (HEARTBEAT_MS ${heartbeatMs})`);
    expect(detectedMs).toBeLessThanOrEqual(heartbeatMs + 500);
    await until(() => tab.ids.size === 1, 10_000, 'the alert written while half-open');
    await until(async () => (await health(d.http)).status === 200, 10_000, 'healthy again');
    await d.stop();
    await proxy.close();
    tab.close();
  }, 30_000);
});
