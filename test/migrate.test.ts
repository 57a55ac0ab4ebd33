/** Migrations: the schema they build, idempotence, and two migrators racing. */
import { describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import pg from 'pg';
import { renormalizeForeignTxids } from '../src/db/bookkeeping.js';
import { BOOKKEEPING_STEP, migrate, SQL_DIR, triggerChannel } from '../src/db/migrate.js';
import { TestClient } from './helpers/client.js';
import { startTestDaemon, tokenFor } from './helpers/daemon.js';
import { emptyDatabase, freshDatabase, query } from './helpers/pg.js';

/** Every migration file, in order. */
const FILES = readdirSync(SQL_DIR).filter((f) => /^\d{6}_.+\.sql$/.test(f)).sort();

describe('migrate', () => {
  it('builds "User" and "Alert" exactly as the model has them; pgbell\'s bookkeeping is in schema pgbell, and on "Alert" only its triggers', async () => {
    const url = await emptyDatabase();
    const r = await migrate(url, { channel: 'pgbell' });
    expect(FILES.slice(0, 4)).toEqual(['000001_schema.sql', '000002_alert_notify.sql', '000003_changes.sql', '000004_revocations.sql']);
    expect(r.applied).toEqual([...FILES, BOOKKEEPING_STEP]);
    const cols = await query(url, `SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns WHERE table_schema = 'public' AND table_name IN ('User','Alert') ORDER BY table_name, ordinal_position`);
    const alert = Object.fromEntries(cols.filter((c) => c.table_name === 'Alert').map((c) => [c.column_name, c]));
    expect(Object.keys(alert)).toEqual(['id', 'userId', 'type', 'title', 'message', 'link', 'data', 'read', 'createdAt']);
    expect(cols.filter((c) => c.table_name === 'User').map((c) => c.column_name)).toEqual(['id', 'email', 'name', 'createdAt']);
    expect((await query(url, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)).map((t) => t.tablename)).toEqual(['Alert', 'User']);
    expect((await query(url, `SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace`))).toEqual([]);
    expect((await query(url, `SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'Alert' ORDER BY 1`)).map((i) => i.indexname)).toEqual([
      'Alert_pkey',
      'Alert_userId_createdAt_idx',
      'Alert_userId_type_unread_idx',
    ]);
    expect((await query(url, `SELECT tgname FROM pg_trigger WHERE tgrelid = '"Alert"'::regclass AND NOT tgisinternal ORDER BY 1`)).map((t) => t.tgname)).toEqual([
      'pgbell_delete',
      'pgbell_insert',
      'pgbell_truncate',
      'pgbell_update',
    ]);
    expect(alert.id).toMatchObject({ data_type: 'text', column_default: '(gen_random_uuid())::text' });
    expect(alert.type).toMatchObject({ is_nullable: 'NO', column_default: "'general'::text" });
    expect(alert.link!.is_nullable).toBe('YES');
    expect(alert.data).toMatchObject({ data_type: 'jsonb', is_nullable: 'YES' });
    expect(alert.read).toMatchObject({ data_type: 'boolean', column_default: 'false' });
    expect(alert.createdAt).toMatchObject({ data_type: 'timestamp with time zone', column_default: 'now()' });

    // on delete cascade from "User"
    await query(url, `INSERT INTO "User" (id, email) VALUES ('u', 'u@x'); INSERT INTO "Alert" ("userId", title) VALUES ('u', 't')`);
    await query(url, `DELETE FROM "User" WHERE id = 'u'`);
    expect(await query(url, `SELECT * FROM "Alert"`)).toEqual([]);
    await expect(query(url, `INSERT INTO "Alert" ("userId", title) VALUES ('ghost', 't')`)).rejects.toThrow(/foreign key/);
  });

  it('re-running is a no-op', async () => {
    const url = await emptyDatabase();
    await migrate(url, { channel: 'pgbell' });
    const again = await migrate(url, { channel: 'pgbell' });
    expect(again).toEqual({ applied: [], skipped: FILES, channelChanged: false });
    expect((await query(url, `SELECT count(*)::int AS n FROM pgbell.pgbell_migrations`))[0]!.n).toBe(FILES.length);
  });

  it('four migrators started at the same time: each file applied exactly once, nobody fails', async () => {
    const url = await emptyDatabase();
    const results = await Promise.all([1, 2, 3, 4].map(() => migrate(url, { channel: 'pgbell' })));
    expect(results.flatMap((r) => r.applied).sort()).toEqual([...FILES, BOOKKEEPING_STEP].sort());
    expect((await query(url, `SELECT count(*)::int AS n FROM pgbell.pgbell_migrations`))[0]!.n).toBe(FILES.length);
  });

  it('a different PGBELL_CHANNEL rewrites the trigger argument, once', async () => {
    const url = await emptyDatabase();
    await migrate(url, { channel: 'pgbell' });
    expect((await migrate(url, { channel: 'alerts_b' })).channelChanged).toBe(true);
    expect((await migrate(url, { channel: 'alerts_b' })).channelChanged).toBe(false);
    expect(await triggerChannel((t) => query(url, t).then((rows) => ({ rows })))).toBe('alerts_b');
  });

  it('a failing migration rolls back entirely and names the file', async () => {
    const url = await emptyDatabase();
    await query(url, `CREATE TABLE "User" (id int)`); // collides with 000001
    await expect(migrate(url, { channel: 'pgbell' })).rejects.toThrow(/migration 000001_schema.sql failed: relation "User" already exists/);
    expect(await query(url, `SELECT * FROM pgbell.pgbell_migrations`)).toEqual([]);
  });

  it('re-stamping a restore never touches what writers commit meanwhile: a daemon starting while the app writes loses no alert', async () => {
    // Each daemon start runs migrate, and migrate re-stamps rows whose transaction ids are
    // above what the server has handed out. Rows committed while it runs are not from a
    // restore, however their ids compare with a snapshot taken a moment before.
    const url = await freshDatabase(['rw']);
    let stop = false;
    const writers = Array.from({ length: 4 }, async () => {
      while (!stop) await query(url, `INSERT INTO "Alert" ("userId", title) VALUES ('rw', 'live')`);
    });
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const stamped: number[] = [];
    try {
      const until = Date.now() + 4_000;
      while (Date.now() < until) stamped.push(await renormalizeForeignTxids(client));
    } finally {
      stop = true;
      await Promise.all(writers);
      await client.end();
    }
    expect(stamped.filter((n) => n > 0)).toEqual([]);
    expect((await query(url, `SELECT count(*)::int AS n FROM pgbell."AlertChange" WHERE txid = '3' OR "changedTxid" = '3'`))[0]!.n).toBe(0);
  });

  it('a database restored from another cluster (row transaction ids from its future) is re-stamped, and then streams as usual', async () => {
    const url = await freshDatabase(['rs']);
    const id = (await query(url, `INSERT INTO "Alert" ("userId", title) VALUES ('rs', 'from the old cluster') RETURNING id`))[0]!.id as string;
    // What a restore brings: ids far above anything this cluster has handed out.
    await query(url, `BEGIN;
      UPDATE pgbell."AlertChange" SET txid = (pg_current_xact_id()::text::bigint + 1000000)::text::xid8, "changedTxid" = (pg_current_xact_id()::text::bigint + 1000000)::text::xid8;
      INSERT INTO pgbell."AlertTombstone" (id, "userId", txid) VALUES ('gone', 'rs', (pg_current_xact_id()::text::bigint + 1000001)::text::xid8);
      UPDATE pgbell.pgbell_state SET "relayTxid" = (pg_current_xact_id()::text::bigint + 1000002)::text::xid8;
      COMMIT;`);
    const r = await migrate(url, { channel: 'pgbell', log: () => {} });
    expect(r.applied).toEqual([]);
    const [row] = await query(url, `SELECT txid::text AS t, "changedTxid"::text AS c, (SELECT "relayTxid" FROM pgbell.pgbell_state) AS relay, (SELECT txid::text FROM pgbell."AlertTombstone" WHERE id = 'gone') AS tomb FROM pgbell."AlertChange" WHERE key = $1`, [id]);
    expect(row).toEqual({ t: '3', c: '3', relay: null, tomb: '3' });
    // A resume now reads nothing stale, and a new alert streams.
    const d = await startTestDaemon(url);
    try {
      const c = await TestClient.ready(d.url, await tokenFor('rs'));
      await query(url, `INSERT INTO "Alert" ("userId", title) VALUES ('rs', 'after the restore')`);
      expect((await c.next((m) => m.type === 'notification')).alert.title).toBe('after the restore');
      const again = await TestClient.ready(d.url, await tokenFor('rs'), c.cursor());
      expect(again.alerts()).toEqual([]);
      c.close();
      again.close();
    } finally {
      await d.stop();
    }
  });
});
