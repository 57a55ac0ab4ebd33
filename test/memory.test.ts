/**
 * What a daemon keeps of rows is bounded by bytes, not only by a count of them: the recent
 * live transactions kept for syncs that may not have seen them, and (WAL mode) a transaction as
 * it streams in. Past the bound nothing is lost: a tab still gets every alert.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { freshDatabase } from './helpers/pg.js';
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
