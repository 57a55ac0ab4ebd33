/**
 * A session idle in transaction holds the horizon (pg_snapshot_xmin) where it is. Every later
 * transaction of a user then stays above it: each live cursor's set of ids is bounded anyway
 * (MAX_MEMORY_IDS in memory, MAX_CURSOR_IDS on the wire), nothing is lost, and the held
 * transaction is delivered when it commits. In notify and poll mode.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_CURSOR_IDS } from '../src/delivery/cursor.js';

/** The in-memory bound of a live cursor (MAX_MEMORY_IDS in src/delivery/cursor.ts). */
const MEMORY_BOUND = 1024;
import { cleanEnv, run } from './helpers/cli.js';
import { TestClient } from './helpers/client.js';
import { daemonFleet, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';

const N = 5000;
let notifyDb: string;
let pollDb: string;
const fleets = [daemonFleet(() => notifyDb), daemonFleet(() => pollDb)];

beforeAll(async () => {
  notifyDb = await freshDatabase(['st']);
  pollDb = await freshDatabase(['st']);
  expect((await run(['migrate'], cleanEnv({ DATABASE_URL: pollDb, PGBELL_MODE: 'poll' }))).code).toBe(0);
});
afterAll(async () => {
  for (const f of fleets) await f.stopAll();
});

function cursorSizes(d: TestDaemon): number[] {
  return [...d.hub.live('st')].map((s) => s.cursor!.ids.length);
}

describe.each([
  ['notify', () => notifyDb, 0, {}],
  ['poll', () => pollDb, 1, { mode: 'poll' as const, pollMs: 50 }],
])('%s mode, a transaction held open', (_mode, dbOf, fleet, opts) => {
  it(`while ${N} transactions of one user are delivered: cursors stay bounded, nothing is lost, the held one arrives at commit`, async () => {
    const db = dbOf();
    const d = await fleets[fleet]!.start(opts);
    const c = await TestClient.ready(d.url, await tokenFor('st'));
    const held = new pg.Client({ connectionString: db });
    await held.connect();
    await held.query('BEGIN');
    const heldId = (await held.query(`INSERT INTO "Alert" ("userId", title) VALUES ('st', 'held') RETURNING id`)).rows[0].id as string;
    await query(db, `DO $$ BEGIN FOR i IN 1..${N} LOOP INSERT INTO "Alert" ("userId", title) VALUES ('st', 'n' || i); COMMIT; END LOOP; END $$`);
    expect((await query(db, `SELECT count(DISTINCT txid)::int AS n FROM pgbell."AlertChange" WHERE "userId" = 'st'`))[0]!.n).toBe(N);
    const got = await c.count('notification', N, 60_000);
    expect(Math.max(...cursorSizes(d))).toBeLessThanOrEqual(MEMORY_BOUND);
    expect(got.at(-1).cursor.split('.').length - 3).toBeLessThanOrEqual(MAX_CURSOR_IDS);
    await held.query('COMMIT');
    await held.end();
    await c.next((m) => m.type === 'notification' && m.alert.id === heldId, 10_000);
    const truth = new Set((await query(db, `SELECT id FROM "Alert" WHERE "userId" = 'st'`)).map((r) => r.id as string));
    const ids = c.alerts().map((a) => a.id as string);
    expect(new Set(ids)).toEqual(truth);
    expect(ids.length).toBe(truth.size); // no repeat on this connection
    c.close();
  }, 120_000);
});
