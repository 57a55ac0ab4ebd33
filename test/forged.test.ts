/**
 * A NOTIFY payload is a hint any database role can send (NOTIFY needs no privilege). Nothing
 * in one may move a cursor's horizon, stall delivery, or close anyone's socket: what counts is
 * read from pgbell's own tables and from fences the daemon sent itself.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient, sleep } from './helpers/client.js';
import { health, startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';

let db: string;
let daemon: TestDaemon;

beforeAll(async () => {
  db = await freshDatabase(['vic', 'val', 'vin']);
  daemon = await startTestDaemon(db);
});
afterAll(async () => {
  await daemon?.stop();
});

const ids = async (userId: string) => new Set((await query(db, `SELECT id FROM "Alert" WHERE "userId" = $1`, [userId])).map((r) => r.id as string));

describe('hand-made notifications', () => {
  it('a forged horizon moves nothing: every later alert arrives live, and a transaction held open across it too, also after a resume', async () => {
    const c = await TestClient.ready(daemon.url, await tokenFor('vic'));
    const held = new pg.Client({ connectionString: db });
    await held.connect();
    await held.query('BEGIN');
    const idHeld = (await held.query(`INSERT INTO "Alert" ("userId", title) VALUES ('vic', 'held open') RETURNING id`)).rows[0].id as string;

    await query(db, `SELECT pg_notify('pgbell', '{"txid":"999999999999","xmin":"999999999999"}')`);
    for (const t of ['one', 'two', 'three']) await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('vic', $1)`, [t]);
    await c.count('notification', 3);
    await held.query('COMMIT');
    await held.end();
    await c.next((m) => m.type === 'notification' && m.alert.id === idHeld);
    expect(new Set(c.alerts().map((a) => a.id))).toEqual(await ids('vic'));

    // The cursor it holds resumes exactly: nothing missing, nothing repeated.
    const cursor = c.cursor()!;
    c.close();
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('vic', 'while away')`);
    const again = await TestClient.ready(daemon.url, await tokenFor('vic'), cursor);
    expect(again.alerts().map((a) => a.title)).toEqual(['while away']);
    again.close();
  });

  it("the daemon's own probes move the horizon: a live cursor does not keep every transaction id", async () => {
    const c = await TestClient.ready(daemon.url, await tokenFor('vic'));
    for (let i = 0; i < 20; i++) {
      await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('vic', $1)`, [`n${i}`]);
      await sleep(40);
    }
    const last = (await c.count('notification', 20)).at(-1);
    const idsInCursor = last.cursor.split('.').length - 3;
    expect(idsInCursor).toBeLessThan(10);
    c.close();
  });

  it('a transaction id out of xid8 range is dropped: new sockets still get ready, delivery goes on, /health stays true', async () => {
    await query(db, `SELECT pg_notify('pgbell', '{"txid":"99999999999999999999"}')`);
    await query(db, `SELECT pg_notify('pgbell', '{"txid":"18446744073709551615","xmin":"5"}')`);
    const c = await TestClient.ready(daemon.url, await tokenFor('val'));
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('val', 'after the garbage')`);
    expect((await c.next((m) => m.type === 'notification')).alert.title).toBe('after the garbage');
    expect((await health(daemon.http)).status).toBe(200);
    c.close();
  });

  it("a hand-made revocation closes no one; the revocation table's own trigger still does", async () => {
    const c = await TestClient.ready(daemon.url, await tokenFor('vin'));
    await query(db, `SELECT pg_notify('pgbell', json_build_object('revoke', 'vin', 'before', '9999999999')::text)`);
    await sleep(300);
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('vin', 'still here')`);
    expect((await c.next((m) => m.type === 'notification')).alert.title).toBe('still here');
    expect(c.ws.readyState).toBe(c.ws.OPEN);

    await query(db, `INSERT INTO pgbell.pgbell_revocation ("userId") VALUES ('vin')`);
    expect((await c.closed).code).toBe(4403);
  });
});
