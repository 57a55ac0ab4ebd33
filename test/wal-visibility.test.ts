/**
 * WAL mode reads a transaction by id (an update that leaves a TOASTed value unchanged) only
 * once it is visible, however long that takes. A synchronous standby that does not answer holds
 * a commit invisible after it streamed: the live tab, a tab that connects meanwhile and a tab
 * that resumes later all get the update. Uses a cluster of its own (it sets
 * synchronous_standby_names).
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../src/db/migrate.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/cli/embedded.js';
import { startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { createUser, heldWriter, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let dir: string;
let server: EmbeddedPostgres;
let daemon: TestDaemon;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-visibility-'));
  await chmod(dir, 0o755);
  server = await startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), password: 'visibility', settings: { fsync: 'off', wal_level: 'logical' } });
  await migrate(server.url, { channel: '', publish: true });
  await createUser(server.url, 'vee');
  daemon = await startTestDaemon(server.url, { mode: 'wal', heartbeatMs: 1000 });
}, 60_000);
afterAll(async () => {
  await daemon?.stop();
  await query(server.url, `ALTER SYSTEM RESET synchronous_standby_names`).catch(() => {});
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('a streamed transaction that is not visible yet', () => {
  it('is read once visible: live, for a tab that connected during the stall, and on resume', async () => {
    const tab = await new Tab(await tokenFor('vee')).connect(daemon.url);
    const before = tab.cursor;
    // Large, incompressible data: stored out of line, so an update of `read` streams it as
    // "unchanged TOAST" and the transaction is read by id.
    const [row] = await query<{ id: string }>(server.url, `INSERT INTO "Alert" ("userId", title, data) VALUES ('vee', 'big', jsonb_build_object('blob', (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 400)))) RETURNING id`);
    const id = row!.id;
    // One more unread alert: once the big one is read, the true count is 1 (not 0).
    const [keep] = await query<{ id: string }>(server.url, `INSERT INTO "Alert" ("userId", title) VALUES ('vee', 'stays unread') RETURNING id`);
    await until(() => tab.ids.has(id) && tab.ids.has(keep!.id), 10_000, 'the first alerts');

    const { writer, pid } = await heldWriter(server.url);
    // Its COMMIT waits for the standby that never answers: streamed, not yet visible.
    const stalled = writer.query(`UPDATE "Alert" SET read = true WHERE id = $1`, [id]).catch((err: Error) => err);
    await new Promise((r) => setTimeout(r, 6000));
    const during = new Tab(await tokenFor('vee'));
    const connecting = during.connect(daemon.url, 30_000);
    await new Promise((r) => setTimeout(r, 10_000));
    await query(server.url, `SELECT pg_cancel_backend(${pid})`);
    await stalled;
    await writer.end();
    await query(server.url, `ALTER SYSTEM RESET synchronous_standby_names`);
    await query(server.url, `SELECT pg_reload_conf()`);
    await connecting;
    // The update reaches the live tab once visible. Only then the later alerts: a count is read
    // with its change, so a read that ran after them would count them too (correctly, as of
    // that read), and under load it did.
    await until(() => tab.updates.some((u) => u.alert.id === id && u.alert.read === true), 20_000, 'the update, live');
    const later = (await query<{ id: string }>(server.url, `INSERT INTO "Alert" ("userId", title) VALUES ('vee', 'after 1'), ('vee', 'after 2') RETURNING id`)).map((r) => r.id);
    expect((await query<{ read: boolean }>(server.url, `SELECT read FROM "Alert" WHERE id = $1`, [id]))[0]!.read).toBe(true);

    // Every message carries the true unread count.
    const readUpdate = (t: Tab) => t.updates.some((u) => u.alert.id === id && u.alert.read === true && u.unread === 1);
    await until(() => later.every((x) => tab.ids.has(x)), 20_000, 'the later alerts, live');
    expect(readUpdate(tab)).toBe(true);
    await until(() => later.every((x) => during.ids.has(x)), 20_000, 'the later alerts on the tab that connected during the stall');
    // It synced while the update was invisible: it gets it live once visible.
    expect(readUpdate(during)).toBe(true);
    const resumed = new Tab(await tokenFor('vee'));
    resumed.cursor = before;
    await resumed.connect(daemon.url);
    await until(() => later.every((x) => resumed.ids.has(x)), 20_000, 'the later alerts on resume');
    const last = [...resumed.client!.messages].reverse().flatMap((m) => (m.type === 'notification' || m.type === 'update' ? [m.alert] : m.type === 'notifications' ? [...m.alerts].reverse() : [])).find((a) => a.id === id);
    expect(last?.read).toBe(true);
    for (const t of [tab, during, resumed]) t.close();
  }, 90_000);
});
