/**
 * WAL mode with Redis fan-out: after the relay's stream reconnects, its catch-up read and the new
 * stream both hold a delete and re-insert of one alert (D, then C). The catch-up does not send D
 * (its alert exists again) but must still publish its transaction, so that a node's cursor
 * records it: the stream's D, which carries no flags, is then not sent after the catch-up's row,
 * and the client keeps the alert. The relay's chain is held by pausing the test's own Redis
 * (a publish waits), so that the catch-up reads after D and C committed.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/cli/embedded.js';
import { cleanEnv, run } from './helpers/cli.js';
import { TestClient } from './helpers/client.js';
import { daemonFleet, health, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { haveRedisServer } from './helpers/redis-cluster.js';
import { arrived, held, until } from './helpers/tab.js';

const have = haveRedisServer();
describe.skipIf(!have && process.env.PGBELL_REQUIRE_REDIS !== '1')('WAL relay: its catch-up beside its new stream', () => {
  let db: string;
  let dir = '';
  let redis: ChildProcess | undefined;
  let port = 0;
  const fleet = daemonFleet(() => db);
  beforeAll(async () => {
    db = await freshDatabase(['rr']);
    expect((await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'wal' }))).code).toBe(0);
    dir = await mkdtemp(join(tmpdir(), 'pgbell-redis-'));
    port = await freePort();
    redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
    await until(
      () => new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.once('connect', () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(false));
      }),
      10_000,
      'redis-server',
    );
  });
  afterAll(async () => {
    await fleet.stopAll();
    redis?.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('a delete and re-insert the new stream carried, read by the catch-up too: the alert stays', async () => {
    const d = await fleet.start({ mode: 'wal', fanout: 'redis', redisUrl: `redis://127.0.0.1:${port}` });
    await until(async () => (await health(d.http)).body.listener.relay === true, 15_000, 'the relay');
    const c = await TestClient.connect(d.url);
    c.send({ type: 'auth', token: await tokenFor('rr') });
    await c.next((m) => m.type === 'synced');
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('x', 'rr', 'a', 'first')`);
    await c.next(arrived('x'), 15_000);

    execFileSync('redis-cli', ['-p', String(port), 'CLIENT', 'PAUSE', '3500', 'WRITE']);
    const t0 = Date.now();
    // Its publish waits on the pause: the relay's chain is held.
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('w', 'rr', 'a', 'warm')`);
    await new Promise((r) => setTimeout(r, 100));
    await query(db, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'walsender' AND datname = current_database()`);
    await until(() => d.logs.messages().includes('replication stream reconnected'), 20_000, 'the stream reconnected');
    await new Promise((r) => setTimeout(r, 100));
    await query(db, `DELETE FROM "Alert" WHERE id = 'x'`);
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('x', 'rr', 'a', 'back')`);
    // Within the pause, or the case is not the one under test.
    expect(Date.now() - t0).toBeLessThan(3000);
    await query(db, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('marker', 'rr', 'a', 'marker')`);
    await c.next(arrived('marker'), 15_000);
    await new Promise((r) => setTimeout(r, 500));
    c.close();
    expect(held(c.messages).get('x')?.title, 'x exists, titled back').toBe('back');
  }, 60_000);
});
