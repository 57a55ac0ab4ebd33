/**
 * Poll mode (PGBELL_MODE=poll): the triggers send no NOTIFY, the daemon reads new changes by
 * transaction id. Same guarantees: every committed insert, update and delete reaches exactly
 * its user's sockets, through dropped sockets, dropped database connections and a daemon
 * replaced by another.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { PgbellClient, type SocketConstructor } from '../src/client/index.js';
import { cleanEnv, run } from './helpers/cli.js';
import { TestClient } from './helpers/client.js';
import { daemonFleet, health, tokenFor } from './helpers/daemon.js';
import { freshDatabase, psql, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let db: string;
const fleet = daemonFleet(() => db);
const poll = { mode: 'poll' as const, pollMs: 50 };

beforeAll(async () => {
  db = await freshDatabase(['pia', 'pol']);
  const r = await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'poll' }));
  expect(r.stdout).toMatch(/triggers now send no NOTIFY \(poll mode\)/);
  expect(r.code).toBe(0);
});
afterAll(() => fleet.stopAll());

describe('poll mode', () => {
  it('writers send no NOTIFY; a psql INSERT still reaches its user\'s socket, and only that user\'s', async () => {
    const d = await fleet.start(poll);
    const listen = new pg.Client({ connectionString: db });
    await listen.connect();
    const heard: string[] = [];
    listen.on('notification', (n) => heard.push(n.payload ?? ''));
    await listen.query('LISTEN pgbell');
    const pia = await new Tab(await tokenFor('pia'), true).connect(d.url);
    const pol = await new Tab(await tokenFor('pol')).connect(d.url);

    await psql(db, `INSERT INTO "Alert" ("userId", title) VALUES ('pia', 'polled in')`);
    await until(() => pia.ids.size === 1, 5000, 'the alert by polling');
    await psql(db, `UPDATE "Alert" SET read = true WHERE "userId" = 'pia'`);
    await until(() => pia.updates.length === 1, 5000, 'the update by polling');
    await psql(db, `DELETE FROM "Alert" WHERE "userId" = 'pia'`);
    await until(() => pia.deleted.size === 1, 5000, 'the delete by polling');
    await new Promise((r) => setTimeout(r, 200));
    expect(heard).toEqual([]);
    expect(pol.ids.size).toBe(0);
    await listen.end();

    const h = await health(d.http);
    expect(h.status).toBe(200);
    expect(h.body.listener).toMatchObject({ state: 'connected', mode: 'poll', intervalMs: 50 });
    pia.close();
    pol.close();
  });

  it('an alert inserted and changed before the daemon read it arrives as update; pgbell/client announces it as a new notification', async () => {
    // A slow poll makes the race certain: both transactions commit within one interval.
    const d = await fleet.start({ mode: 'poll', pollMs: 1000 });
    const client = new PgbellClient({ url: d.url, token: await tokenFor('pol'), WebSocket: WebSocket as unknown as SocketConstructor });
    const announced: string[] = [];
    client.on('notification', (a) => announced.push(a.id));
    await client.start();
    await until(() => client.state.status === 'live', 5000, 'live');
    const raw = await TestClient.connect(d.url);
    raw.send({ type: 'auth', token: await tokenFor('pol') });
    await raw.next((m) => m.type === 'synced');
    const id = (await query<{ id: string }>(db, `INSERT INTO "Alert" ("userId", title) VALUES ('pol', 'raced') RETURNING id`))[0]!.id;
    await query(db, `UPDATE "Alert" SET title = 'raced, then edited' WHERE id = $1`, [id]);
    const upd = await raw.next((m) => m.type === 'update', 5000);
    expect(upd.alert).toMatchObject({ id, title: 'raced, then edited' });
    expect(raw.of('notification')).toEqual([]);
    await until(() => announced.includes(id), 5000, 'the client to announce it');
    expect(client.state.alerts.find((a) => a.id === id)?.title).toBe('raced, then edited');
    client.stop();
    raw.close();
  });

  it('a revocation is found by polling too: the user\'s sockets close with 4403', async () => {
    const d = await fleet.start(poll);
    const c = await TestClient.connect(d.url);
    c.send({ type: 'auth', token: await tokenFor('pol') });
    await c.next((m) => m.type === 'synced');
    await psql(db, `INSERT INTO pgbell.pgbell_revocation ("userId", before) VALUES ('pol', now() + interval '1 second')`);
    expect(await c.closed).toEqual({ code: 4403, reason: 'token_revoked' });
  });

  it('a daemon refuses to start when its mode and the triggers disagree, saying what to run', async () => {
    await expect(fleet.start()).rejects.toThrow(/trigger sends no NOTIFY \(poll or WAL mode\) but PGBELL_CHANNEL is "pgbell" and PGBELL_MODE is notify: run `pgbell migrate` with the same PGBELL_CHANNEL and PGBELL_MODE/);
    const notifying = await freshDatabase();
    await expect(daemonFleet(() => notifying).start(poll)).rejects.toThrow(/trigger notifies channel "pgbell" but PGBELL_MODE is poll/);
    const doctor = await run(['doctor'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'poll' }));
    expect(doctor.stdout).toMatch(/✓ triggers: send no NOTIFY \(poll or WAL mode\)/);
    expect(doctor.stdout).toMatch(/✓ poll mode: no LISTEN needed/);
    expect(doctor.code).toBe(0);
  });

  it('within one poll, transactions go out in transaction-id order, not commit order (the exception docs/guarantees.md states)', async () => {
    const d = await fleet.start({ mode: 'poll', pollMs: 2000 });
    const tab = await TestClient.ready(d.url, await tokenFor('pia'));
    const older = new pg.Client({ connectionString: db });
    const newer = new pg.Client({ connectionString: db });
    await older.connect();
    await newer.connect();
    const insert = (c: pg.Client, title: string) => c.query(`INSERT INTO "Alert" ("userId", title) VALUES ('pia', $1)`, [title]);
    await older.query('BEGIN');
    await insert(older, 'older');
    await newer.query('BEGIN');
    await insert(newer, 'newer');
    // Delivered by a poll that just ran: the next one is about 2 s away.
    await psql(db, `INSERT INTO "Alert" ("userId", title) VALUES ('pia', 'marker')`);
    await tab.next((m) => m.type === 'notification' && m.alert.title === 'marker', 5000);
    await newer.query('COMMIT');
    await older.query('COMMIT');
    const got = await tab.count('notification', 3, 10_000);
    expect(got.map((m) => m.alert.title)).toEqual(['marker', 'older', 'newer']);
    await older.end();
    await newer.end();
    tab.close();
  });
});
