/**
 * Redis fan-out when Redis does not answer: a socket whose SSUBSCRIBE never settles is closed
 * with 1013 (not left neither live nor closed), and a daemon that has not reached Redis (one
 * server, or a whole cluster) for longer than its bound closes its sockets with 1013, so that
 * their clients go elsewhere, instead of holding them silent. Each Redis here is a
 * `redis-server` of the test's own, stopped and killed at will.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from './helpers/client.js';
import { daemonFleet, health, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { haveRedisServer, startRedisCluster } from './helpers/redis-cluster.js';
import { Tab, until } from './helpers/tab.js';

const have = haveRedisServer();
let db: string;
const fleet = daemonFleet(() => db);
let dir = '';

beforeAll(async () => {
  if (!have) return;
  db = await freshDatabase(['ra', 'rb', 'rc']);
  dir = await mkdtemp(join(tmpdir(), 'pgbell-redis-'));
});
// Each test's daemon must be the relay (the lock is per database): the last one goes first.
afterEach(() => fleet.stopAll());
afterAll(async () => {
  await fleet.stopAll();
  for (const r of servers) r.kill('SIGKILL');
  if (dir) await rm(dir, { recursive: true, force: true });
});

const servers: ChildProcess[] = [];

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** A redis-server of this test's own on `port`; resolves once it answers. */
async function redisServer(port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  servers.push(child);
  for (let i = 0; ; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (up) return child;
    if (i > 100) throw new Error(`redis-server on ${port} did not start`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Reads an event stream until its `close` event; its data, or null if none came within `ms`. */
async function streamClose(base: string, token: string, ms: number): Promise<{ code: number; reason: string } | null> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), ms);
  try {
    const res = await fetch(`${base}/alerts/stream`, { headers: { authorization: `Bearer ${token}` }, signal: ctl.signal });
    let text = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      text += Buffer.from(chunk).toString();
      const m = /event: close\ndata: (.*)\n/.exec(text);
      if (m) return JSON.parse(m[1]!);
    }
    return null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

/** The close of `c` within `ms`, or null. */
function closedWithin(c: TestClient, ms: number): Promise<{ code: number; reason: string } | null> {
  return Promise.race([c.closed, new Promise<null>((r) => setTimeout(() => r(null), ms))]);
}

describe.skipIf(!have)('Redis that does not answer', () => {
  it("a user's socket that closes while a new one of the user subscribes: the new one is not left on a channel its SUNSUBSCRIBE dropped", async () => {
    const port = await freePort();
    const redis = await redisServer(port);
    const d = await fleet.start({ fanout: 'redis', redisUrl: `redis://127.0.0.1:${port}` });
    await until(async () => (await health(d.http)).body.listener.relay === true, 10_000, 'the relay');
    const old = await TestClient.ready(d.url, await tokenFor('rb'));
    // Redis holds its answers: the old socket's SUNSUBSCRIBE is out, unanswered, while the new
    // socket subscribes (a reload within Redis's round trip, made as long as needed).
    redis.kill('SIGSTOP');
    let fresh: Tab;
    try {
      old.close();
      await old.closed;
      await new Promise((r) => setTimeout(r, 100));
      const connecting = new Tab(await tokenFor('rb')).connect(d.url);
      await new Promise((r) => setTimeout(r, 500));
      redis.kill('SIGCONT');
      fresh = await connecting;
    } finally {
      redis.kill('SIGCONT');
    }
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('rb', 'after the reload')`);
    await until(() => fresh.ids.size === 1, 10_000, 'the alert on the new socket');
    fresh.close();
  }, 60_000);

  it('a socket (and a stream) whose SSUBSCRIBE never settles is closed with 1013 node_unavailable within the bound, and one after Redis answers again goes live', async () => {
    const port = await freePort();
    const redis = await redisServer(port);
    const d = await fleet.start({ fanout: 'redis', redisUrl: `redis://127.0.0.1:${port}`, redisTimeouts: { subscribeMs: 1000, unreachableMs: 600_000 } });
    await until(async () => (await health(d.http)).body.listener.relay === true, 10_000, 'the relay');
    // Redis stops answering; its connections stay up, so nothing notices but the commands.
    redis.kill('SIGSTOP');
    try {
      const c = await TestClient.connect(d.url);
      c.send({ type: 'auth', token: await tokenFor('ra') });
      const t0 = Date.now();
      expect(await closedWithin(c, 5000)).toEqual({ code: 1013, reason: 'node_unavailable' });
      expect(Date.now() - t0).toBeLessThan(4000);
      expect(c.messages).toEqual([{ type: 'error', code: 'node_unavailable', message: 'This node cannot reach its Redis; reconnect, to another node if you can' }]);
      expect(await streamClose(d.http, await tokenFor('rb'), 5000)).toEqual({ code: 1013, reason: 'node_unavailable' });
    } finally {
      redis.kill('SIGCONT');
    }
    // Answering again: the next socket of the same user is subscribed and live.
    const tab = await new Tab(await tokenFor('ra')).connect(d.url);
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('ra', 'after the stall')`);
    await until(() => tab.ids.size === 1, 10_000, 'the alert after Redis answered again');
    tab.close();
  }, 60_000);

  it('a daemon that cannot reach its Redis for longer than the bound closes its sockets with 1013, and refuses new ones the same way', async () => {
    const port = await freePort();
    const redis = await redisServer(port);
    const d = await fleet.start({ fanout: 'redis', redisUrl: `redis://127.0.0.1:${port}`, redisTimeouts: { subscribeMs: 1000, unreachableMs: 1500 } });
    const live = await TestClient.ready(d.url, await tokenFor('rc'));
    redis.kill('SIGKILL');
    const t0 = Date.now();
    expect(await closedWithin(live, 8000)).toEqual({ code: 1013, reason: 'node_unavailable' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    expect((await health(d.http)).status).toBe(503);
    expect(d.logs.messages().some((m) => /^closed 1 sockets with 1013: Redis unreachable for \d+ s$/.test(m))).toBe(true);
    const late = await TestClient.connect(d.url);
    late.send({ type: 'auth', token: await tokenFor('rc') });
    expect(await closedWithin(late, 5000)).toEqual({ code: 1013, reason: 'node_unavailable' });
    // Redis back on its port: sockets are served again.
    await redisServer(port);
    await until(async () => (await health(d.http)).status === 200, 20_000, 'healthy again');
    const tab = await new Tab(await tokenFor('rc')).connect(d.url);
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('rc', 'Redis is back')`);
    await until(() => tab.ids.size >= 1, 10_000, 'an alert once Redis is back');
    tab.close();
  }, 60_000);

  it('a relay whose publish Redis never answers still stops (SIGTERM during a Redis stall)', async () => {
    const port = await freePort();
    const redis = await redisServer(port);
    const d = await fleet.start({ fanout: 'redis', redisUrl: `redis://127.0.0.1:${port}` });
    await until(async () => (await health(d.http)).body.listener.relay === true, 10_000, 'the relay');
    redis.kill('SIGSTOP');
    try {
      // Its SPUBLISH goes out and gets no answer.
      await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('ra', 'never published')`);
      await new Promise((r) => setTimeout(r, 1000));
      const t0 = Date.now();
      const stopped = await Promise.race([d.stop().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 20_000))]);
      expect(stopped).toBe(true);
      expect(Date.now() - t0).toBeLessThan(15_000);
    } finally {
      redis.kill('SIGCONT');
    }
  }, 60_000);

  it('a Redis Cluster with every node gone: the daemon closes its sockets with 1013 once the bound has passed', async () => {
    const cluster = await startRedisCluster();
    try {
      const d = await fleet.start({ fanout: 'redis', redisClusterNodes: cluster.urls, redisTimeouts: { subscribeMs: 1000, unreachableMs: 2000 } });
      const live = await TestClient.ready(d.url, await tokenFor('ra'));
      for (const n of cluster.nodes) n.process.kill('SIGKILL');
      expect(await closedWithin(live, 15_000)).toEqual({ code: 1013, reason: 'node_unavailable' });
      const late = await TestClient.connect(d.url);
      late.send({ type: 'auth', token: await tokenFor('ra') });
      expect(await closedWithin(late, 5000)).toEqual({ code: 1013, reason: 'node_unavailable' });
    } finally {
      await cluster.stop();
    }
  }, 90_000);
});
