/**
 * Redis fan-out when Redis does not answer at once. Each Redis here is a `redis-server` of the
 * test's own, stopped and killed at will.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from './helpers/client.js';
import { daemonFleet, health, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { haveRedisServer } from './helpers/redis-cluster.js';
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
});
