/**
 * Many users, many sockets, concurrent writers: every socket ends with exactly the set of
 * alerts committed for its user — nothing lost, nothing foreign, nothing twice.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../src/db/migrate.js';
import { TestClient } from './helpers/client.js';
import { startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { createUser, freshDatabase, psql, query } from './helpers/pg.js';

let db: string;
let daemon: TestDaemon;
const USERS = Array.from({ length: 12 }, (_, i) => `user-${i}`);

beforeAll(async () => {
  db = await freshDatabase(USERS);
  daemon = await startTestDaemon(db);
});
afterAll(async () => {
  await daemon?.stop();
});

describe('fan-out', () => {
  it('4 concurrent writers, 12 users × 3 sockets: each socket gets exactly its user\'s alerts', async () => {
    const sockets = new Map<string, TestClient[]>();
    for (const u of USERS) {
      sockets.set(u, await Promise.all([0, 1, 2].map(async () => TestClient.ready(daemon.url, await tokenFor(u)))));
    }
    // Writers: single rows, multi-row statements, multi-statement transactions, and rollbacks.
    const writer = async (w: number) => {
      const c = new pg.Client({ connectionString: db });
      await c.connect();
      for (let i = 0; i < 25; i++) {
        const u = USERS[(w * 7 + i * 5) % USERS.length]!;
        const v = USERS[(w * 3 + i) % USERS.length]!;
        await c.query('BEGIN');
        await c.query(`INSERT INTO "Alert" ("userId", title) VALUES ($1, $2)`, [u, `w${w}-${i}-a`]);
        await c.query(`INSERT INTO "Alert" ("userId", title) VALUES ($1, $2), ($3, $4)`, [v, `w${w}-${i}-b`, u, `w${w}-${i}-c`]);
        await c.query(i % 6 === 5 ? 'ROLLBACK' : 'COMMIT');
      }
      await c.end();
    };
    await Promise.all([0, 1, 2, 3].map(writer));

    const committed = await query<{ id: string; userId: string }>(db, `SELECT id, "userId" FROM "Alert"`);
    expect(committed.length).toBe(4 * 25 * 3 - 4 * 4 * 3); // 4 rolled-back transactions per writer
    for (const u of USERS) {
      const expected = committed.filter((r) => r.userId === u).map((r) => r.id).sort();
      for (const s of sockets.get(u)!) {
        await s.count('notification', expected.length);
        const got = s.alerts().map((a) => a.id).sort();
        expect(got).toEqual(expected);
      }
    }
    // And nothing more arrives afterwards: a final sentinel per user is the next thing each gets.
    await psql(db, `INSERT INTO "Alert" ("userId", title) SELECT id, 'sentinel' FROM "User"`);
    for (const u of USERS) {
      const expected = committed.filter((r) => r.userId === u).length + 1;
      for (const s of sockets.get(u)!) {
        await s.count('notification', expected);
        expect(s.alerts().at(-1).title).toBe('sentinel');
        expect(s.alerts()).toHaveLength(expected);
        s.close();
      }
    }
  });

  it('a socket that closes in the middle of a burst does not disturb the others', async () => {
    const stays = await TestClient.ready(daemon.url, await tokenFor('user-0'));
    const leaves = await TestClient.ready(daemon.url, await tokenFor('user-0'));
    const burst = psql(db, `INSERT INTO "Alert" ("userId", title) SELECT 'user-0', 'b' || i FROM generate_series(1, 300) i`);
    leaves.ws.terminate();
    await burst;
    expect(await stays.count('notification', 300)).toHaveLength(300);
    stays.close();
  });
});

describe('PGBELL_CHANNEL', () => {
  it('a daemon on another channel refuses to start until migrate points the trigger at it, then delivers on it', async () => {
    const other = await freshDatabase();
    await createUser(other, 'zoe');
    await expect(startTestDaemon(other, { channel: 'alerts_two' })).rejects.toThrow(
      'the "Alert" trigger notifies channel "pgbell" but PGBELL_CHANNEL is "alerts_two": run `pgbell migrate` with the same PGBELL_CHANNEL',
    );
    await migrate(other, { channel: 'alerts_two' });
    const d = await startTestDaemon(other, { channel: 'alerts_two' });
    try {
      const c = await TestClient.ready(d.url, await tokenFor('zoe'));
      await psql(other, `INSERT INTO "Alert" ("userId", title) VALUES ('zoe', 'on alerts_two')`);
      expect((await c.next((m) => m.type === 'notification')).alert.title).toBe('on alerts_two');
      c.close();
    } finally {
      await d.stop();
    }
  });
});
