/**
 * The database itself goes away: the listener must outlive pg-listen's default 3 s give-up,
 * report degraded meanwhile, reconnect when Postgres is back, and deliver again.
 * Uses a cluster of its own, since restarting the shared one would disturb other files.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../src/db/migrate.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/cli/embedded.js';
import { TestClient } from './helpers/client.js';
import { health, startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { createUser, psql } from './helpers/pg.js';

let dir: string;
let server: EmbeddedPostgres;
let daemon: TestDaemon | undefined;

const start = (port?: number) =>
  startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), password: 'restart', port, settings: { fsync: 'off' } });

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-restart-'));
  await chmod(dir, 0o755);
  server = await start();
  await migrate(server.url, { channel: 'pgbell' });
  await createUser(server.url, 'alice');
});
afterAll(async () => {
  await daemon?.stop();
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('Postgres restart', () => {
  it('stays degraded while Postgres is down for longer than 3 s, then reconnects and delivers again', async () => {
    daemon = await startTestDaemon(server.url);
    const c = await TestClient.ready(daemon.url, await tokenFor('alice'));
    const port = server.port;

    await server.stop();
    await until(async () => (await health(daemon!.http)).status === 503, 5000, '503 after shutdown');
    await new Promise((r) => setTimeout(r, 4000)); // past pg-listen's default give-up time
    expect((await health(daemon.http)).body).toMatchObject({ status: 'degraded', listener: { state: 'reconnecting' } });
    // The sockets stay open while the database is away.
    expect(c.ws.readyState).toBe(c.ws.OPEN);

    server = await start(port);
    await until(async () => (await health(daemon!.http)).status === 200, 15_000, '200 after restart');
    expect((await health(daemon.http)).body.listener.reconnects).toBe(1);

    await psql(server.url, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'after restart')`);
    expect((await c.next((m) => m.type === 'notification')).alert.title).toBe('after restart');
    c.close();
  }, 60_000);
});
