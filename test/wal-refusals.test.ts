/**
 * WAL mode against servers that refuse it, for real: wal_level below logical, no free
 * replication slot, a role without REPLICATION. Each is one log line naming the setting and the
 * fix, /health answers 503 with it, the daemon stays up, and it streams once the cause is gone.
 * Uses a cluster of its own, since it restarts it with other settings.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../src/db/migrate.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/cli/embedded.js';
import { health, startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { createUser, databaseUrl, psql, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let dir: string;
let server: EmbeddedPostgres;
const daemons: TestDaemon[] = [];

const start = (settings: Record<string, string>, port?: number) =>
  startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), password: 'refusals', port, settings: { fsync: 'off', ...settings } });

const daemon = async (overrides: Parameters<typeof startTestDaemon>[1] = {}) => {
  const d = await startTestDaemon(server.url, { mode: 'wal', heartbeatMs: 1000, ...overrides });
  daemons.push(d);
  return d;
};

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-refusals-'));
  await chmod(dir, 0o755);
  server = await start({ wal_level: 'replica' });
  await migrate(server.url, { channel: '', publish: true });
  await createUser(server.url, 'rae');
});
afterAll(async () => {
  for (const d of daemons) await d.stop();
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('WAL mode on a server that refuses it', () => {
  it('wal_level = replica: one line saying to set wal_level = logical and restart; 503 until the server is restarted with it, then it streams', async () => {
    const d = await daemon();
    const h = await health(d.http);
    expect(h.status).toBe(503);
    expect(h.body.listener.problem).toMatch(/^WAL mode needs wal_level = logical: run ALTER SYSTEM SET wal_level = logical and restart the server \(on Amazon RDS/);
    await new Promise((r) => setTimeout(r, 1500));
    expect(d.logs.lines.filter((l) => /needs wal_level = logical/.test(l.msg))).toHaveLength(1);
    const port = server.port;
    await server.stop();
    server = await start({ wal_level: 'logical' }, port);
    await until(async () => (await health(d.http)).status === 200, 20_000, 'the stream once wal_level is logical');
    const tab = await new Tab(await tokenFor('rae')).connect(d.url);
    await psql(server.url, `INSERT INTO "Alert" ("userId", title) VALUES ('rae', 'now streaming')`);
    await until(() => tab.ids.size === 1, 5000, 'the alert');
    tab.close();
    await d.stop();
  }, 90_000);

  it('no free replication slot: the second daemon says to raise max_replication_slots, and streams once the first is gone', async () => {
    const port = server.port;
    await server.stop();
    server = await start({ wal_level: 'logical', max_replication_slots: '1' }, port);
    const first = await daemon();
    await until(async () => (await health(first.http)).status === 200, 10_000, 'the first daemon streaming');
    const second = await daemon();
    await until(async () => /max_replication_slots/.test((await health(second.http)).body.listener.problem ?? ''), 10_000, 'the slot problem');
    expect((await health(second.http)).status).toBe(503);
    expect((await health(second.http)).body.listener.problem).toMatch(/^no free replication slot: raise max_replication_slots \(needs a restart\)/);
    await first.stop();
    await until(async () => (await health(second.http)).status === 200, 20_000, 'the second daemon streaming');
    await second.stop();
  }, 90_000);

  it('a role without REPLICATION: one line naming ALTER ROLE … REPLICATION and rds_replication; the daemon stays up', async () => {
    await query(server.url, `CREATE ROLE norep LOGIN PASSWORD 'refusals'`);
    const u = new URL(databaseUrl(server.url, 'postgres'));
    u.username = 'norep';
    u.password = 'refusals';
    const d = await daemon({ listenDatabaseUrl: u.toString() });
    await until(async () => /REPLICATION/.test((await health(d.http)).body.listener.problem ?? ''), 10_000, 'the role problem');
    const h = await health(d.http);
    expect(h.status).toBe(503);
    expect(h.body.listener.problem).toMatch(/^WAL mode needs a role with REPLICATION: ALTER ROLE <role> REPLICATION \(on Amazon RDS\/Aurora: GRANT rds_replication TO <role>/);
    await query(server.url, `ALTER ROLE norep REPLICATION`);
    await until(async () => (await health(d.http)).status === 200, 20_000, `the stream once the role may replicate (${JSON.stringify((await health(d.http)).body.listener)} ${JSON.stringify(d.logs.lines.filter((l) => l.level >= 20).map((l) => [l.msg, l.err, l.attempt]).slice(-6))})`);
  }, 60_000);
});
