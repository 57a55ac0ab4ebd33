/**
 * A socket's first sync does not hold up live delivery. Here its read is made to wait (an
 * ACCESS EXCLUSIVE lock on pgbell_state, which only reads by cursor take) while alerts are
 * written: sockets already live get them at once, and the socket that is syncing gets each
 * exactly once when its read is back: from the read, or from what was stashed for it meanwhile.
 * In notify and poll mode.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, run } from './helpers/cli.js';
import { TestClient } from './helpers/client.js';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { until } from './helpers/tab.js';

let notifyDb: string;
let pollDb: string;
const fleets = [daemonFleet(() => notifyDb), daemonFleet(() => pollDb)];

beforeAll(async () => {
  notifyDb = await freshDatabase(['sa', 'sb']);
  pollDb = await freshDatabase(['sa', 'sb']);
  expect((await run(['migrate'], cleanEnv({ DATABASE_URL: pollDb, PGBELL_MODE: 'poll' }))).code).toBe(0);
});
afterAll(async () => {
  for (const f of fleets) await f.stopAll();
});

describe.each([
  ['notify', () => notifyDb, 0, {}],
  ['poll', () => pollDb, 1, { mode: 'poll' as const, pollMs: 50 }],
])('%s mode', (_mode, dbOf, fleet, opts) => {
  it('alerts reach live sockets while another socket sync is stuck; that socket then gets each exactly once', async () => {
    const db = dbOf();
    const d = await fleets[fleet]!.start(opts);
    const liveA = await TestClient.ready(d.url, await tokenFor('sa'));
    const liveB = await TestClient.ready(d.url, await tokenFor('sb'));
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('sa', 'before')`);
    await liveA.next((m) => m.type === 'notification' && m.alert.title === 'before');

    const lock = new pg.Client({ connectionString: db });
    await lock.connect();
    await lock.query('BEGIN');
    await lock.query('LOCK TABLE pgbell.pgbell_state IN ACCESS EXCLUSIVE MODE');
    try {
      const syncing = await TestClient.connect(d.url.replace(/^http/, 'ws'));
      syncing.send({ type: 'auth', token: await tokenFor('sa'), after: liveA.cursor() });
      // The sync read is waiting on the lock.
      const waiting = async () => (await query(db, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`))[0]!.n;
      for (let i = 0; (await waiting()) === 0; i++) {
        if (i > 200) throw new Error('the sync read never waited on the lock');
        await new Promise((r) => setTimeout(r, 10));
      }
      for (let i = 0; i < 5; i++) {
        await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('sa', 'during ' || $1), ('sb', 'during ' || $1)`, [i]);
      }
      await query(db, `UPDATE "Alert" SET read = true WHERE "userId" = 'sa' AND title = 'during 0'`);
      // Live sockets get them while the other sync is stuck. (A poll can find "during 0" and
      // its update together: it then arrives once, as an update with its current state.)
      const got = () => new Set(liveA.messages.filter((m) => m.type === 'notification' || m.type === 'update').map((m) => m.alert.title as string));
      await until(() => ['before', 'during 0', 'during 1', 'during 2', 'during 3', 'during 4'].every((t) => got().has(t)), 5000, 'the six alerts on the live socket');
      await liveB.count('notification', 5, 5000);
      await liveA.next((m) => m.type === 'update' && m.alert.title === 'during 0', 5000);
      expect(syncing.of('synced')).toHaveLength(0);
      await lock.query('COMMIT');
      await syncing.next((m) => m.type === 'synced', 5000);
      await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('sa', 'after')`);
      await syncing.next((m) => m.type === 'notification' && m.alert.title === 'after', 5000);
      await liveA.next((m) => m.type === 'notification' && m.alert.title === 'after', 5000);
      // Every alert since its cursor, once; the read state of "during 0" as the table has it.
      const titles = syncing.alerts().map((a) => a.title as string);
      expect(titles.sort()).toEqual(['after', 'during 0', 'during 1', 'during 2', 'during 3', 'during 4']);
      const d0 = [...syncing.messages].reverse().find((m) => (m.type === 'notification' || m.type === 'update') && m.alert.title === 'during 0');
      expect(d0.alert.read).toBe(true);
      expect(syncing.messages.at(-1).unread).toBe(6);
      expect(syncing.messages.some((m) => m.alert?.userId === 'sb')).toBe(false);
      for (const c of [liveA, liveB, syncing]) c.ws.close();
    } finally {
      await lock.query('ROLLBACK').catch(() => {});
      await lock.end();
    }
  }, 30_000);
});
