/**
 * The lose-nothing run in each mode: notify (LISTEN), poll, and WAL (logical replication). Every
 * committed insert, update and delete reaches exactly its user's tabs, through dropped tabs,
 * killed database connections (the pool's and the listener's or stream's) and a daemon
 * replaced by another.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, run } from './helpers/cli.js';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { MODES } from './helpers/modes.js';
import { Tab, until } from './helpers/tab.js';

describe.each(Object.keys(MODES) as Array<keyof typeof MODES>)('%s mode', (mode) => {
  let db: string;
  const fleet = daemonFleet(() => db);
  const opts = MODES[mode];

  beforeAll(async () => {
    db = await freshDatabase(['pia', 'pol']);
    const r = await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: mode }));
    expect(r.code).toBe(0);
  });
  afterAll(() => fleet.stopAll());

  it('loses nothing: multi-row writers, updates and deletes through dropped tabs, killed connections and a replaced daemon', async () => {
    const d1 = await fleet.start(opts);
    const tabs = [new Tab(await tokenFor('pia'), true), new Tab(await tokenFor('pol')), new Tab(await tokenFor('pia'))];
    await Promise.all(tabs.map((t) => t.connect(d1.url)));
    const before = new Set((await query<{ id: string }>(db, 'SELECT id FROM "Alert"')).map((r) => r.id));
    let stop = false;
    const writers = [0, 1, 2].map(async (w) => {
      for (let i = 0; !stop; i++) {
        await query(db, `INSERT INTO "Alert" ("userId", title) SELECT CASE WHEN g % 2 = 0 THEN 'pia' ELSE 'pol' END, $1 || '-' || g FROM generate_series(1, $2::int) g`, [`w${w}.${i}`, 1 + (i % 5)]);
        if (i % 4 === 3) await query(db, `UPDATE "Alert" SET read = true WHERE id IN (SELECT id FROM "Alert" WHERE NOT read ORDER BY random() LIMIT 2)`);
        if (i % 6 === 5) await query(db, `DELETE FROM "Alert" WHERE id IN (SELECT id FROM "Alert" WHERE title LIKE 'w%' ORDER BY random() LIMIT 1)`);
      }
    });
    const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
    await pause(300);
    tabs[0]!.drop();
    await pause(200);
    await tabs[0]!.connect(d1.url);
    // The daemon's pooled connections die under it, and its LISTEN or replication connection
    // (polls fail and resume from the same point; the others catch up from cursors).
    await query(db, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name IN ('pgbell', 'pgbell-listener') AND pid <> pg_backend_pid()`);
    await pause(300);
    const d2 = await fleet.start(opts);
    await d1.stop();
    await Promise.all(tabs.map((t) => t.connect(d2.url)));
    await pause(300);
    stop = true;
    await Promise.all(writers);

    for (const [t, user] of [[tabs[0]!, 'pia'], [tabs[1]!, 'pol'], [tabs[2]!, 'pia']] as const) {
      const rows = await query<{ id: string }>(db, `SELECT id FROM "Alert" WHERE "userId" = $1`, [user]);
      const deleted = (await query<{ id: string }>(db, `SELECT id FROM pgbell."AlertTombstone" WHERE "userId" = $1`, [user])).map((r) => r.id);
      const live = new Set(rows.map((r) => r.id).filter((id) => !before.has(id)));
      // Every alert still there was received; every one received is either there or deleted (and the delete was seen).
      await until(() => [...live].every((id) => t.ids.has(id)), 10_000, `every alert of ${user}`);
      for (const id of t.ids) expect(live.has(id) || deleted.includes(id), id).toBe(true);
      for (const id of t.ids) if (!live.has(id)) await until(() => t.deleted.has(id), 5000, `the delete of ${id}`);
      expect(t.repeatsWithinConnection).toEqual([]);
      expect(t.resets).toBe(0);
      t.close();
    }
  });

});
