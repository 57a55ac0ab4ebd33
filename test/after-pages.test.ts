/**
 * Where a read of changes since a cursor stops: a read that hit its limit is cut short however
 * its rows are then ordered (a delete and re-insert in one transaction), on ?after= pages and on
 * a socket's resume; and a transaction larger than a page is delivered even while an older
 * transaction keeps the horizon back (it was handed the same cursor back for ever).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { Tab } from './helpers/tab.js';

let db: string;
const fleet = daemonFleet(() => db);

beforeAll(async () => {
  db = await freshDatabase(['counted', 'wedged', 'resumer']);
});
afterAll(() => fleet.stopAll());

const get = async (base: string, path: string, token: string) => {
  const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as any };
};

describe('?after= paging', () => {
  it('a delete and re-insert in one transaction does not hide that the delete read was cut short', async () => {
    const d = await fleet.start();
    const token = await tokenFor('counted');
    await query(db, `INSERT INTO "Alert" (id, "userId", title) SELECT 'c' || g, 'counted', 'old ' || g FROM generate_series(1, 502) g`);
    const start = await get(d.http, '/alerts', token);
    expect(start.status).toBe(200);
    // T1: delete and re-insert c1 (a tombstone lastWins drops). T2: delete 501 other alerts.
    await query(db, `BEGIN; DELETE FROM "Alert" WHERE id = 'c1'; INSERT INTO "Alert" (id, "userId", title) VALUES ('c1', 'counted', 'again'); COMMIT;`);
    await query(db, `DELETE FROM "Alert" WHERE "userId" = 'counted' AND id <> 'c1'`);
    const deleted = new Set<string>();
    let cursor = start.body.cursor as string;
    for (let i = 0; i < 10; i++) {
      const r = await get(d.http, `/alerts?after=${encodeURIComponent(cursor)}`, token);
      expect(r.status).toBe(200);
      for (const id of r.body.deleted) deleted.add(id);
      cursor = r.body.cursor;
      if (!r.body.more) break;
    }
    // Every one of the 501 deleted alerts must be reported deleted (or the cursor reset); c1's
    // delete, if sent, comes before c1 itself.
    expect([...deleted].filter((id) => id !== 'c1').length).toBe(501);
  }, 60_000);

  it('a transaction larger than a page is delivered while an older transaction is open', async () => {
    const d = await fleet.start();
    const token = await tokenFor('wedged');
    // Any session holding a transaction id (an idle-in-transaction session, a long report)
    // keeps every snapshot's xmin at or below it.
    const holder = new pg.Client({ connectionString: db });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_current_xact_id()');
      const start = await get(d.http, '/alerts', token);
      await query(db, `INSERT INTO "Alert" ("userId", title) SELECT 'wedged', 'bulk ' || g FROM generate_series(1, 600) g`);
      const got = new Set<string>();
      let cursor = start.body.cursor as string;
      const pages: Array<{ n: number; more: boolean }> = [];
      for (let i = 0; i < 10; i++) {
        const r = await get(d.http, `/alerts?after=${encodeURIComponent(cursor)}`, token);
        expect(r.status).toBe(200);
        for (const a of r.body.alerts) got.add(a.id);
        pages.push({ n: r.body.alerts.length, more: r.body.more });
        cursor = r.body.cursor;
        if (!r.body.more) break;
      }
      // On main: ten empty pages, each `more: true` with the same cursor (a client spins, and
      // its requests count toward USER_RATE_LIMIT, which also refuses the user's new sockets).
      expect(pages.at(-1)!.more).toBe(false);
      expect(got.size).toBe(600);
    } finally {
      await holder.query('ROLLBACK').catch(() => {});
      await holder.end();
    }
  }, 60_000);
});

describe('WebSocket resume', () => {
  it('a resume past MAX_REPLAY deletes is reset, even when lastWins dropped one of the tombstones read', async () => {
    const d = await fleet.start({ maxReplay: 20 });
    const token = await tokenFor('resumer');
    await query(db, `INSERT INTO "Alert" (id, "userId", title) SELECT 'r' || g, 'resumer', 'old ' || g FROM generate_series(1, 22) g`);
    const tab = await new Tab(token).connect(d.url);
    tab.close();
    await new Promise((r) => setTimeout(r, 200));
    await query(db, `BEGIN; DELETE FROM "Alert" WHERE id = 'r1'; INSERT INTO "Alert" (id, "userId", title) VALUES ('r1', 'resumer', 'again'); COMMIT;`);
    await query(db, `DELETE FROM "Alert" WHERE "userId" = 'resumer' AND id <> 'r1'`);
    await tab.connect(d.url);
    tab.close();
    // Either every one of the 21 deletes, or a reset.
    const complete = tab.resets > 0 || tab.deleted.size === 21;
    expect({ resets: tab.resets, deleted: tab.deleted.size, complete }).toMatchObject({ complete: true });
  }, 60_000);
});
