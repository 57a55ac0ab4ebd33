/**
 * What a daemon keeps of rows is bounded by bytes, not only by a count of them: the recent
 * live transactions kept for syncs that may not have seen them, and (WAL mode) a transaction as
 * it streams in. Past the bound nothing is lost: a tab still gets every alert.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, run } from './helpers/cli.js';
import { daemonFleet, startTestDaemon, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let db: string;

beforeAll(async () => {
  db = await freshDatabase(['ma', 'mb']);
});
afterAll(async () => {
  await fleet.stopAll();
});

const fleet = daemonFleet(() => db);

async function gauge(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}

describe('the recent-transaction memory', () => {
  it('keeps at most its byte bound of rows, however few transactions they came in, and the tab still gets every alert', async () => {
    const bound = 64 * 1024;
    const d = await fleet.start({ recentMaxBytes: bound });
    const tab = await new Tab(await tokenFor('ma')).connect(d.url);
    const writer = new pg.Client({ connectionString: db });
    await writer.connect();
    // 20 transactions of 20 rows of about 1 KB: some 400 KB, in well under RECENT_MS (10 s).
    const message = 'm'.repeat(1000);
    for (let i = 0; i < 20; i++) {
      await writer.query(`INSERT INTO "Alert" ("userId", title, message) SELECT 'ma', 'r' || g, $1 FROM generate_series(${i * 20}, ${i * 20 + 19}) g`, [message]);
    }
    await writer.end();
    await until(() => tab.ids.size >= 400, 10_000, `all 400 (have ${tab.ids.size})`);
    const kept = await gauge(d.http, 'pgbell_recent_bytes');
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(bound);
    tab.close();
  });
});

describe('WAL mode: a transaction as it streams in', () => {
  it('past its byte bound, a bulk transaction is read by id instead of carried: the tab gets its inserts and its deletes, a small one is still carried', async () => {
    const walDb = await freshDatabase(['wa', 'wb']);
    expect((await run(['migrate'], cleanEnv({ DATABASE_URL: walDb, PGBELL_MODE: 'wal' }))).code).toBe(0);
    const d = await startTestDaemon(walDb, { mode: 'wal', walCarryMaxBytes: 256 * 1024 });
    try {
      const tab = await new Tab(await tokenFor('wa')).connect(d.url);
      const via = async () => {
        const text = await (await fetch(`${d.http}/metrics`)).text();
        const n = (v: string) => Number(new RegExp(`pgbell_live_transactions_total\\{via="${v}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
        return { stream: n('stream'), read: n('read') };
      };
      await query(walDb, `INSERT INTO "Alert" ("userId", title) SELECT 'wa', 'small ' || g FROM generate_series(1, 10) g`);
      await until(() => tab.ids.size === 10, 5000, 'the small transaction');
      expect(await via()).toEqual({ stream: 1, read: 0 });
      // 3,000 rows of about 1 KB for two users in one statement: some 6 MB as it streams
      // (each row comes twice, the table's and its bookkeeping).
      await query(walDb, `INSERT INTO "Alert" ("userId", title, message) SELECT CASE WHEN g % 2 = 0 THEN 'wa' ELSE 'wb' END, 'bulk ' || g, repeat('b', 1000) FROM generate_series(1, 3000) g`);
      await until(() => tab.ids.size === 1510, 15_000, `the bulk transaction's 1,500 (have ${tab.ids.size - 10})`);
      await query(walDb, `DELETE FROM "Alert" WHERE title LIKE 'bulk %'`);
      await until(() => tab.deleted.size === 1500, 15_000, `the bulk delete's 1,500 (have ${tab.deleted.size})`);
      expect(await via()).toEqual({ stream: 1, read: 2 });
      const truth = new Set((await query(walDb, `SELECT id FROM "Alert" WHERE "userId" = 'wa'`)).map((r) => r.id as string));
      expect(new Set([...tab.ids].filter((id) => !tab.deleted.has(id)))).toEqual(truth);
      tab.close();
    } finally {
      await d.stop();
    }
  }, 60_000);
});
