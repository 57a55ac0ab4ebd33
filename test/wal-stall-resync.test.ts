/**
 * WAL mode, a socket that syncs while live delivery waits: a synchronous standby that does not
 * answer holds one commit invisible, and every later live step waits behind it (see
 * wal-visibility.test.ts). A socket that resumes meanwhile reads the current state of its
 * alerts: an alert inserted (transaction I) and changed again (U) since its cursor comes to it
 * once, as new, in U's state. The socket has then seen I as well, though its cursor names only U
 * (no row is stamped with I any more):
 *   - when the waiting live steps go out, I's is not sent to it again (it would repeat the alert
 *     as new, in its older state);
 *   - when the stream was lost meanwhile and the catch-up reads the alert again after a later
 *     change, it comes as an update, not as a new alert a second time.
 * Uses a cluster of its own (it sets synchronous_standby_names).
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../src/db/migrate.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/cli/embedded.js';
import { startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { createUser, heldWriter, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let dir: string;
let server: EmbeddedPostgres;
let daemon: TestDaemon;
/** The test's writes: committed locally, not held by the standby. */
let local: pg.Client;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-stall-resync-'));
  await chmod(dir, 0o755);
  server = await startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), password: 'stall', settings: { fsync: 'off', wal_level: 'logical' } });
  await migrate(server.url, { channel: '', publish: true });
  for (const u of ['ola', 'oskar', 'other']) await createUser(server.url, u);
  // The daemon's own sessions commit locally too, as the app's other writers would.
  const [db] = await query<{ d: string }>(server.url, 'SELECT current_database() AS d');
  await query(server.url, `ALTER DATABASE "${db!.d}" SET synchronous_commit = local`);
  daemon = await startTestDaemon(server.url, { mode: 'wal', heartbeatMs: 1000 });
  local = new pg.Client({ connectionString: server.url });
  local.on('error', () => {});
  await local.connect();
}, 60_000);
afterAll(async () => {
  await local?.end().catch(() => {});
  await daemon?.stop();
  await query(server.url, `ALTER SYSTEM RESET synchronous_standby_names`).catch(() => {});
  await query(server.url, `SELECT pg_reload_conf()`).catch(() => {});
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

/**
 * Starts a commit the standby holds: an alert for another user, streamed at once and invisible
 * until release() cancels its wait (the commit stands).
 */
async function stall(): Promise<{ release: () => Promise<void> }> {
  const { writer, pid } = await heldWriter(server.url);
  const held = writer.query(`INSERT INTO "Alert" ("userId", title) VALUES ('other', 'held by the standby')`).catch((err: Error) => err);
  // Streamed (the walsender does not wait for the standby); its live step waits to see it.
  await new Promise((r) => setTimeout(r, 500));
  return {
    release: async () => {
      await query(server.url, `SELECT pg_cancel_backend(${pid})`);
      await held;
      await writer.end();
      await query(server.url, `ALTER SYSTEM RESET synchronous_standby_names`);
      await query(server.url, `SELECT pg_reload_conf()`);
    },
  };
}

/** The last state of alert `id` a tab's current connection was sent. */
function lastSent(tab: Tab, id: string): any {
  return [...tab.client!.messages].reverse().flatMap((m) => (m.type === 'notification' || m.type === 'update' ? [m.alert] : m.type === 'notifications' ? [...m.alerts].reverse() : [])).find((a) => a.id === id);
}

/** Resolves once every live step before it went out: an alert inserted now reached `tab`. */
async function flushed(tab: Tab, user: string): Promise<void> {
  const [m] = await query<{ id: string }>(server.url, `INSERT INTO "Alert" ("userId", title) VALUES ($1, 'marker') RETURNING id`, [user]);
  await until(() => tab.ids.has(m!.id), 20_000, 'the marker alert');
}

describe('a socket that syncs while live delivery waits for a commit to be visible', () => {
  it('is not sent again, live, a transaction its read saw only in a later state', async () => {
    const before = await new Tab(await tokenFor('ola')).connect(daemon.url);
    before.close();
    const { release } = await stall();
    // Streamed, and queued behind the held commit.
    const [a] = (await local.query<{ id: string }>(`INSERT INTO "Alert" ("userId", title) VALUES ('ola', 'inserted') RETURNING id`)).rows;
    await local.query(`UPDATE "Alert" SET read = true WHERE id = $1`, [a!.id]);
    await new Promise((r) => setTimeout(r, 500));
    // Resumes meanwhile: the read finds the alert, read, and sends it as new.
    const tab = new Tab(await tokenFor('ola'));
    tab.cursor = before.cursor;
    await tab.connect(daemon.url);
    expect(tab.client!.alerts().map((x) => x.id)).toEqual([a!.id]);
    await release();
    await flushed(tab, 'ola');
    expect(tab.repeatsWithinConnection).toEqual([]);
    expect(lastSent(tab, a!.id)?.read).toBe(true);
    tab.close();
  }, 60_000);

  it('is sent an update, not the alert again, by the catch-up after the stream came back', async () => {
    const before = await new Tab(await tokenFor('oskar')).connect(daemon.url);
    before.close();
    const lostBefore = daemon.logs.messages().filter((m) => m === 'the replication stream was lost; reconnecting').length;
    const { release } = await stall();
    // The stream goes; a new slot waits for the held commit to end, so nothing below streams.
    await query(server.url, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgbell-listener' AND backend_type = 'walsender'`);
    await until(() => daemon.logs.messages().filter((m) => m === 'the replication stream was lost; reconnecting').length > lostBefore, 10_000, 'the stream lost');
    const [a] = (await local.query<{ id: string }>(`INSERT INTO "Alert" ("userId", title) VALUES ('oskar', 'inserted') RETURNING id`)).rows;
    await local.query(`UPDATE "Alert" SET read = true WHERE id = $1`, [a!.id]);
    const tab = new Tab(await tokenFor('oskar'));
    tab.cursor = before.cursor;
    await tab.connect(daemon.url);
    expect(tab.client!.alerts().map((x) => x.id)).toEqual([a!.id]);
    // Changed again while the stream is down: the catch-up reads it.
    await local.query(`UPDATE "Alert" SET title = 'changed' WHERE id = $1`, [a!.id]);
    await release();
    await until(() => lastSent(tab, a!.id)?.title === 'changed', 20_000, 'the change, from the catch-up');
    await flushed(tab, 'oskar');
    expect(tab.repeatsWithinConnection).toEqual([]);
    expect(lastSent(tab, a!.id)).toMatchObject({ title: 'changed', read: true });
    tab.close();
  }, 60_000);
});
