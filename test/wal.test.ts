/**
 * WAL mode (PGBELL_MODE=wal): the triggers send no NOTIFY; the daemon streams the publication
 * over a replication connection with a temporary slot. Rows come from the stream (not read
 * again), horizons only from the daemon's own messages, and refusals of the server are one line
 * each with /health at 503 while the daemon keeps running.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { explain } from '../src/sources/wal.js';
import { cleanEnv, run } from './helpers/cli.js';
import { TestClient } from './helpers/client.js';
import { daemonFleet, health, SECRET, tokenFor } from './helpers/daemon.js';
import { freshDatabase, psql, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let db: string;
const fleet = daemonFleet(() => db);
const wal = { mode: 'wal' as const };

/** pgbell's replication slots on the server, with whether a connection holds them. */
async function slots(url: string): Promise<Array<{ slot_name: string; active: boolean; temporary: boolean }>> {
  return query(url, `SELECT slot_name, active, temporary FROM pg_replication_slots WHERE slot_name LIKE 'pgbell%' AND database = current_database()`);
}

beforeAll(async () => {
  db = await freshDatabase(['wanda', 'walt']);
  const r = await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'wal' }));
  expect(r.stdout).toMatch(/triggers now send no NOTIFY \(WAL mode\)/);
  expect(r.stdout).toMatch(/created publication pgbell/);
  expect(r.code).toBe(0);
});
afterAll(() => fleet.stopAll());

describe('WAL mode', () => {
  it('writers send no NOTIFY; a psql INSERT, UPDATE and DELETE reach their user from the stream, not from a read', async () => {
    const d = await fleet.start(wal);
    const listen = new pg.Client({ connectionString: db });
    await listen.connect();
    const heard: string[] = [];
    listen.on('notification', (n) => heard.push(n.payload ?? ''));
    await listen.query('LISTEN pgbell');
    const wanda = await new Tab(await tokenFor('wanda'), true).connect(d.url);
    const walt = await new Tab(await tokenFor('walt')).connect(d.url);

    await psql(db, `INSERT INTO "Alert" ("userId", title, data) VALUES ('wanda', 'streamed in', '{"n": 1}')`);
    await until(() => wanda.ids.size === 1, 5000, 'the alert from the stream');
    await psql(db, `UPDATE "Alert" SET read = true WHERE "userId" = 'wanda'`);
    await until(() => wanda.updates.length === 1, 5000, 'the update from the stream');
    expect(wanda.updates[0].alert).toMatchObject({ title: 'streamed in', read: true, data: { n: 1 } });
    await psql(db, `DELETE FROM "Alert" WHERE "userId" = 'wanda'`);
    await until(() => wanda.deleted.size === 1, 5000, 'the delete from the stream');
    await new Promise((r) => setTimeout(r, 200));
    expect(heard).toEqual([]);
    expect(walt.ids.size).toBe(0);
    await listen.end();

    const metrics = await (await fetch(`${d.http}/metrics`)).text();
    expect(metrics).toMatch(/pgbell_live_transactions_total\{via="stream"\} 3/);
    expect(metrics).not.toMatch(/pgbell_live_transactions_total\{via="read"\}/);

    const h = await health(d.http);
    expect(h.status).toBe(200);
    expect(h.body.listener).toMatchObject({ state: 'connected', mode: 'wal', problem: null });
    const mine = await query<{ application_name: string; backend_type: string }>(db, `SELECT application_name, backend_type FROM pg_stat_activity WHERE backend_type = 'walsender' AND datname = current_database()`);
    expect(mine.map((r) => r.application_name)).toContain('pgbell-listener');
    expect((await slots(db)).some((s) => s.slot_name === h.body.listener.slot && s.temporary && s.active)).toBe(true);
    wanda.close();
    walt.close();
  });

  it('the alert a socket gets from the stream is the one a read gives: same JSON, unread counts exact', async () => {
    const d = await fleet.start(wal);
    const c = await TestClient.connect(d.url);
    c.send({ type: 'auth', token: await tokenFor('walt') });
    const ready = await c.next((m) => m.type === 'synced');
    const before = ready.unread as number;
    const ids = await query<{ id: string }>(db, `INSERT INTO "Alert" ("userId", type, title, message, link, data) VALUES
      ('walt', 'mention', 'one', 'first', 'https://example.test/1', '{"deep": {"a": [1, 2.5, null, "x"]}, "ok": true}'),
      ('walt', 'billing', 'two', 'second', NULL, NULL) RETURNING id`);
    const got = [await c.next((m) => m.type === 'notification'), await c.next((m) => m.type === 'notification' && m.alert.id === ids[1]!.id)];
    expect(got[1].unread).toBe(before + 2);
    // A resume reads the same alerts from the table: they must be identical.
    const r = await TestClient.connect(d.url);
    r.send({ type: 'auth', token: await tokenFor('walt'), after: ready.cursor });
    await r.next((m) => m.type === 'synced');
    const replayed = r.of('notification');
    expect(replayed.map((m) => m.alert)).toEqual(got.map((m) => m.alert));
    c.close();
    r.close();
  });

  it('a forged logical message moves no horizon: a message without this daemon\'s nonce is ignored', async () => {
    const d = await fleet.start(wal);
    const c = await TestClient.connect(d.url);
    c.send({ type: 'auth', token: await tokenFor('walt') });
    await c.next((m) => m.type === 'synced');
    // A transaction left open keeps its id unseen; a forged horizon far above it would skip it.
    const writer = new pg.Client({ connectionString: db });
    await writer.connect();
    await writer.query('BEGIN');
    await writer.query(`INSERT INTO "Alert" ("userId", title) VALUES ('walt', 'held open')`);
    await query(db, `SELECT pg_logical_emit_message(false, 'pgbell', json_build_object('nonce', 'forged', 'xmin', '99999999')::text)`);
    await query(db, `SELECT pg_logical_emit_message(false, 'pgbell', 'not json')`);
    await new Promise((r) => setTimeout(r, 300));
    await writer.query('COMMIT');
    await writer.end();
    const n = await c.next((m) => m.type === 'notification' && m.alert.title === 'held open', 5000);
    expect(n.alert.userId).toBe('walt');
    expect((await health(d.http)).status).toBe(200);
    c.close();
  });

  it('loses nothing when the replication connection is terminated while writers run; a new temporary slot replaces the old', async () => {
    const d = await fleet.start(wal);
    const tab = await new Tab(await tokenFor('wanda')).connect(d.url);
    const before = new Set((await query<{ id: string }>(db, `SELECT id FROM "Alert" WHERE "userId" = 'wanda'`)).map((r) => r.id));
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) await query(db, `INSERT INTO "Alert" ("userId", title) SELECT 'wanda', 'k' || g FROM generate_series(1, 3) g`);
    })();
    await new Promise((r) => setTimeout(r, 300));
    const slot1 = (await health(d.http)).body.listener.slot as string;
    await query(db, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgbell-listener' AND datname = current_database()`);
    await until(async () => {
      const l = (await health(d.http)).body.listener;
      return l.state === 'connected' && l.slot !== slot1;
    }, 10_000, 'a new stream');
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await writer;
    const ids = (await query<{ id: string }>(db, `SELECT id FROM "Alert" WHERE "userId" = 'wanda'`)).map((r) => r.id).filter((id) => !before.has(id));
    await until(() => ids.every((id) => tab.ids.has(id)), 10_000, 'every alert');
    expect(tab.repeatsWithinConnection).toEqual([]);
    // The old slot went with its connection.
    await until(async () => !(await slots(db)).some((s) => s.slot_name === slot1), 5000, 'the old slot to go');
    tab.close();
  });

  it('a SIGKILLed daemon leaves no slot behind (nothing keeps WAL for it)', async () => {
    const child = spawn(process.execPath, [path.resolve('bin/pgbell.js'), 'start'], {
      env: cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PGBELL_MODE: 'wal', PORT: '0', HOST: '127.0.0.1', LOG_FORMAT: 'json' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b) => (out += String(b)));
    // Killed whatever happens below: a failed wait must not leave a daemon running.
    const kill = () => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL');
    let slot: string;
    try {
      await until(() => /streaming publication pgbell/.test(out), 15_000, 'the daemon to stream');
      slot = /temporary slot (pgbell_[0-9a-f]+)/.exec(out)![1]!;
      expect((await slots(db)).map((s) => s.slot_name)).toContain(slot);
    } finally {
      kill();
    }
    await until(async () => !(await slots(db)).some((s) => s.slot_name === slot), 15_000, 'the slot to be dropped');
    const retained = await query<{ n: number }>(db, `SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
    expect(retained[0]!.n).toBe(0);
  });

  it('start and migrate agree on the mode: a daemon in notify mode refuses triggers migrated for WAL mode', async () => {
    const r = await run(['start'], cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PORT: '0' }));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/sends no NOTIFY/);
  });

  it('a missing publication is one line naming the fix; the daemon stays up with /health 503 until it is back', async () => {
    const other = await freshDatabase(['wes']);
    const r = await run(['migrate'], cleanEnv({ DATABASE_URL: other, PGBELL_MODE: 'poll' }));
    expect(r.code).toBe(0);
    db = other;
    const d = await fleet.start(wal);
    const h = await health(d.http);
    expect(h.status).toBe(503);
    expect(h.body.listener.problem).toMatch(/publication pgbell is missing: run `pgbell migrate`.*PGBELL_MODE=wal/);
    expect(d.logs.lines.filter((l) => /publication pgbell is missing/.test(l.msg))).toHaveLength(1);
    const c = await new Tab(await tokenFor('wes')).connect(d.url);
    // Committed while the socket holds a cursor and no stream runs: the first stream catches up.
    const [early] = await query<{ id: string }>(other, `INSERT INTO "Alert" ("userId", title) VALUES ('wes', 'before the stream') RETURNING id`);
    const m = await run(['migrate'], cleanEnv({ DATABASE_URL: other, PGBELL_MODE: 'wal' }));
    expect(m.stdout).toMatch(/created publication pgbell/);
    await until(async () => (await health(d.http)).status === 200, 15_000, '/health 200');
    await psql(other, `INSERT INTO "Alert" ("userId", title) VALUES ('wes', 'after the fix')`);
    await until(() => c.ids.size === 2, 5000, 'both alerts');
    expect(c.ids.has(early!.id)).toBe(true);
    c.close();
  });

  it('doctor reports wal_level, the role, the publication and the slots pgbell owns with the WAL each keeps', async () => {
    const d = await fleet.start(wal);
    const slot = (await health(d.http)).body.listener.slot as string;
    const ok = await run(['doctor'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'wal' }));
    expect(ok.stdout).toMatch(/✓ wal_level: logical/);
    expect(ok.stdout).toMatch(/✓ replication role: /);
    expect(ok.stdout).toMatch(/✓ publication: pgbell publishes public\.Alert/);
    expect(ok.stdout).toMatch(new RegExp(`✓ pgbell slots: .*${slot} \\(temporary, streaming, keeps [0-9.]+ (bytes|kB|MB|GB) of WAL\\)`));
    expect(ok.stdout).toMatch(/✓ replication connection: DATABASE_URL accepts a replication connection/);
    expect(ok.code).toBe(0);
    await psql(db, `ALTER PUBLICATION pgbell DROP TABLE pgbell."AlertTombstone"`);
    const bad = await run(['doctor'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'wal' }));
    expect(bad.stdout).toMatch(/✗ publication: altered: it lacks pgbell\.AlertTombstone: run `pgbell migrate` with PGBELL_MODE=wal/);
    expect(bad.code).toBe(1);
    const fixed = await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'wal' }));
    expect(fixed.stdout).toMatch(/created publication pgbell/);
  });

  it('explains each refusal of the server in one line naming the setting and the fix', () => {
    const e = (message: string, code?: string) => explain(Object.assign(new Error(message), { code }));
    expect(e('logical decoding requires wal_level >= logical', '55000')).toMatch(/wal_level = logical.*restart/);
    expect(e('must be superuser or replication role to start walsender', '42501')).toMatch(/REPLICATION.*rds_replication/);
    expect(e('all replication slots are in use', '53400')).toMatch(/max_replication_slots/);
    expect(e('number of requested standby connections exceeds max_wal_senders (currently 0)', '53300')).toMatch(/max_wal_senders/);
    expect(e('logical decoding cannot be used while in recovery', '55000')).toMatch(/replica/);
    expect(e('unsupported startup parameter: replication')).toMatch(/pooler/);
    expect(e('Connection terminated unexpectedly')).toBeNull();
  });
});
