/**
 * A failover to an asynchronous standby, in every mode. The old primary commits alerts the
 * standby never receives (its WAL receiver is cut off) and every tab is sent them; then the
 * primary crashes, the standby is promoted, and a TCP proxy (the managed database's address)
 * moves to it. The new primary hands the lost transactions' ids out again, to new alerts.
 *
 * A cursor that "has" such an id would skip a different alert. So every socket that held a
 * cursor of the old timeline must get `reset` (drop local state, reload the list), and every
 * alert committed on the new primary must reach its user's tabs (live, or in the list reloaded
 * after the reset); nothing of another user, and /health back to 200 without an operator.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secretKey } from '../src/auth.js';
import { createDb } from '../src/db/connect.js';
import { alertsHandler } from '../src/server/alerts.js';
import { FaultProxy } from './chaos/proxy.js';
import { cleanEnv, run } from './helpers/cli.js';
import { SECRET, health, startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { query } from './helpers/pg.js';
import { PgServer, serverBinaries } from './helpers/pg-standby.js';
import { Tab, until } from './helpers/tab.js';

const have = serverBinaries() !== null;
if (!have) {
  if (process.env.PGBELL_REQUIRE_FAILOVER === '1') throw new Error('PGBELL_REQUIRE_FAILOVER=1 but no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)');
  console.warn('failover tests skipped: no PostgreSQL server binaries under /usr/lib/postgresql');
}

/** A primary with database `app` migrated for `mode` and users u1, u2, and a standby of it. */
async function primaryAndStandby(mode: 'notify' | 'poll' | 'wal'): Promise<[PgServer, PgServer]> {
  const primary = await PgServer.primary();
  await query(primary.url(), 'CREATE DATABASE app');
  const r = await run(['migrate'], cleanEnv({ DATABASE_URL: primary.url('app'), PGBELL_MODE: mode }));
  expect(r.code, r.stderr).toBe(0);
  await query(primary.url('app'), `INSERT INTO "User" (id, email) VALUES ('u1', 'u1@example.test'), ('u2', 'u2@example.test')`);
  return [primary, await PgServer.standbyOf(primary)];
}

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Each mode, and Redis fan-out (the relay reads; the node learns of the failover from it). */
const MODES = {
  notify: { mode: 'notify' as const },
  poll: { mode: 'poll' as const, pollMs: 50 },
  wal: { mode: 'wal' as const },
  'notify with Redis fan-out': { mode: 'notify' as const, fanout: 'redis' as const, redisUrl: REDIS_URL },
};

describe.skipIf(!have).each(Object.keys(MODES) as Array<keyof typeof MODES>)('failover to an asynchronous standby, %s', (name) => {
  const mode = MODES[name].mode;
  let primary: PgServer;
  let standby: PgServer;
  let proxy: FaultProxy;
  let target = 0;
  let daemon: TestDaemon;
  const app = (s: PgServer) => s.url('app');
  const viaProxy = () => `postgres://postgres@127.0.0.1:${proxy.port}/app`;

  beforeAll(async () => {
    [primary, standby] = await primaryAndStandby(mode);
    target = primary.port;
    proxy = await FaultProxy.start(() => target);
    daemon = await startTestDaemon(viaProxy(), MODES[name]);
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await proxy?.close();
    await primary?.destroy();
    await standby?.destroy();
  });

  /** Inserts `n` alerts for `user` at `url`, one transaction each: their ids and transaction ids. */
  async function write(url: string, user: string, n: number, tag: string): Promise<Array<{ id: string; tx: string }>> {
    const out: Array<{ id: string; tx: string }> = [];
    for (let i = 0; i < n; i++) {
      const [row] = await query<{ id: string; tx: string }>(url, `INSERT INTO "Alert" ("userId", title) VALUES ($1, $2) RETURNING id, pg_current_xact_id()::text AS tx`, [user, `${tag}${i}`]);
      out.push(row!);
    }
    return out;
  }

  /** What a client does on `reset`: reload the list. */
  async function list(user: string): Promise<Set<string>> {
    const res = await fetch(`${daemon.http}/alerts?limit=100`, { headers: { authorization: `Bearer ${await tokenFor(user)}` } });
    expect(res.status).toBe(200);
    return new Set(((await res.json()) as { alerts: Array<{ id: string }> }).alerts.map((a) => a.id));
  }

  it('every socket of the old timeline is reset, every alert of the new primary reaches its tabs, nothing leaks', async () => {
    const a = await new Tab(await tokenFor('u1')).connect(daemon.url);
    const b = await new Tab(await tokenFor('u2')).connect(daemon.url);
    const late = await new Tab(await tokenFor('u1')).connect(daemon.url);

    // Replicated: on both servers.
    const kept = [...(await write(app(primary), 'u1', 5, 'k')), ...(await write(app(primary), 'u2', 5, 'k'))];
    await until(() => kept.every((r) => a.ids.has(r.id) || b.ids.has(r.id)), 15_000, 'the replicated alerts');
    await standby.caughtUpWith(primary);

    // Committed on the old primary only, and sent to every tab.
    await standby.detach();
    const lost = [...(await write(app(primary), 'u1', 15, 'l')), ...(await write(app(primary), 'u2', 15, 'l'))];
    await until(() => lost.every((r) => a.ids.has(r.id) || b.ids.has(r.id)), 15_000, 'the alerts the standby never gets');
    await until(() => lost.slice(0, 15).every((r) => late.ids.has(r.id)), 15_000, 'the late tab has them too');
    late.drop();

    // The failover: the primary crashes, the standby takes over, the address moves.
    await primary.stop('immediate');
    await standby.promote();
    target = standby.port;
    proxy.cut();

    // Written at once on the new primary, before the daemon has noticed: some reuse the lost ids.
    const early = [...(await write(app(standby), 'u1', 15, 'e')), ...(await write(app(standby), 'u2', 15, 'e'))];
    const lostTx = new Set(lost.map((r) => r.tx));
    expect(early.filter((r) => lostTx.has(r.tx)).length).toBeGreaterThan(0);

    await until(() => a.resets > 0 && b.resets > 0, 30_000, 'a reset on every socket of the old timeline');
    const listed = { u1: await list('u1'), u2: await list('u2') };
    const later = [...(await write(app(standby), 'u1', 15, 'n')), ...(await write(app(standby), 'u2', 15, 'n'))];
    // A tab opened now, and one resuming with a cursor of the old timeline (which it must not
    // be allowed to use: it "has" ids that are other alerts now).
    const fresh = await new Tab(await tokenFor('u1')).connect(daemon.url);
    await late.connect(daemon.url);
    expect(late.resets).toBe(1);
    const after = await write(app(standby), 'u1', 5, 'f');

    const ofUser = (rows: Array<{ id: string }>, n: number, user: 'u1' | 'u2') => rows.filter((_, i) => (i < n ? user === 'u1' : user === 'u2'));
    // Everything on the new primary reaches its user: live, or in the list reloaded after reset.
    for (const [tab, user] of [[a, 'u1'], [b, 'u2']] as const) {
      const want = [...ofUser(early, 15, user), ...ofUser(later, 15, user), ...(user === 'u1' ? after : [])].map((r) => r.id);
      await until(() => want.every((id) => tab.ids.has(id) || listed[user].has(id)), 20_000, `every alert of ${user} on the new primary`);
    }
    await until(() => after.every((r) => fresh.ids.has(r.id) && late.ids.has(r.id)), 20_000, 'alerts after the failover on a fresh and a resumed tab');
    // The lost alerts are gone from the database, so from a reloaded list too.
    for (const r of lost) expect(listed.u1.has(r.id) || listed.u2.has(r.id)).toBe(false);
    // Nothing of another user, nothing twice on one connection.
    const all = { u1: new Set<string>(), u2: new Set<string>() };
    for (const [rows, n] of [[kept, 5], [lost, 15], [early, 15], [later, 15]] as const) {
      for (const r of ofUser(rows, n, 'u1')) all.u1.add(r.id);
      for (const r of ofUser(rows, n, 'u2')) all.u2.add(r.id);
    }
    for (const r of after) all.u1.add(r.id);
    for (const id of a.ids) expect(all.u1.has(id)).toBe(true);
    for (const id of b.ids) expect(all.u2.has(id)).toBe(true);
    for (const tab of [a, b, late, fresh]) expect(tab.repeatsWithinConnection).toEqual([]);
    await until(async () => (await health(daemon.http)).status === 200, 20_000, '/health back to 200');
    for (const tab of [a, b, late, fresh]) tab.close();
  }, 120_000);
});

describe.skipIf(!have).each(['notify', 'wal'] as const)('failover to a synchronous standby mid-write, %s mode', (mode) => {
  let primary: PgServer;
  let standby: PgServer;
  let proxy: FaultProxy;
  let target = 0;
  let daemon: TestDaemon;

  beforeAll(async () => {
    [primary, standby] = await primaryAndStandby(mode);
    // Synchronous: a commit is acknowledged only once the standby has it.
    await query(primary.url(), `ALTER SYSTEM SET synchronous_standby_names = '*'`);
    await query(primary.url(), 'SELECT pg_reload_conf()');
    await until(async () => (await query<{ s: string }>(primary.url(), `SELECT sync_state AS s FROM pg_stat_replication`))[0]?.s === 'sync', 20_000, 'a synchronous standby');
    target = primary.port;
    proxy = await FaultProxy.start(() => target);
    daemon = await startTestDaemon(`postgres://postgres@127.0.0.1:${proxy.port}/app`, { mode });
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await proxy?.close();
    await primary?.destroy();
    await standby?.destroy();
  });

  it('GET /alerts served from the hot standby (an app reading from a replica) lists and resumes', async () => {
    await query(primary.url('app'), `INSERT INTO "Alert" ("userId", title) VALUES ('u1', 'on the standby')`);
    await standby.caughtUpWith(primary);
    const db = createDb(standby.url('app'));
    try {
      const handler = alertsHandler({ db, key: secretKey(SECRET), allowedOrigins: [], maxReplay: 1000 });
      const auth = { authorization: `Bearer ${await tokenFor('u1')}` };
      const res = await handler(new Request('http://app.test/api/alerts', { headers: auth }));
      expect(res.status).toBe(200);
      const body = (await res.json()) as { alerts: Array<{ title: string }>; cursor: string };
      expect(body.alerts.map((a) => a.title)).toContain('on the standby');
      const next = await handler(new Request(`http://app.test/api/alerts?after=${encodeURIComponent(body.cursor)}`, { headers: auth }));
      expect(next.status).toBe(200);
    } finally {
      await db.destroy();
    }
  });

  it('every acknowledged commit reaches its tabs, /health returns to 200 with no operator', async () => {
    const tabs = { u1: await new Tab(await tokenFor('u1')).connect(daemon.url), u2: await new Tab(await tokenFor('u2')).connect(daemon.url) };
    // The app writes through the same address as the daemon, and keeps writing across the failover.
    const acked = { u1: new Set<string>(), u2: new Set<string>() };
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const user = i % 2 === 0 ? 'u1' : 'u2';
        try {
          const [row] = await query<{ id: string }>(`postgres://postgres@127.0.0.1:${proxy.port}/app`, `INSERT INTO "Alert" ("userId", title) VALUES ($1, $2) RETURNING id`, [user, `s${i}`]);
          acked[user].add(row!.id);
        } catch {
          // Not acknowledged: it may or may not have committed; only acknowledged ones are owed.
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    })();
    await until(() => acked.u1.size + acked.u2.size >= 40, 20_000, 'writes before the failover');
    await primary.stop('immediate');
    await standby.promote();
    target = standby.port;
    proxy.cut();
    const at = acked.u1.size + acked.u2.size;
    await until(() => acked.u1.size + acked.u2.size >= at + 40, 30_000, 'writes after the failover');
    stop = true;
    await writer;
    await until(async () => (await health(daemon.http)).status === 200, 30_000, '/health back to 200');
    for (const user of ['u1', 'u2'] as const) {
      const tab = tabs[user];
      await until(() => tab.resets > 0, 30_000, `a reset for ${user}`);
      // After its reset a client reloads the list; what it holds is both.
      const res = await fetch(`${daemon.http}/alerts?limit=200`, { headers: { authorization: `Bearer ${await tokenFor(user)}` } });
      const listed = new Set(((await res.json()) as { alerts: Array<{ id: string }> }).alerts.map((a) => a.id));
      await until(() => [...acked[user]].every((id) => tab.ids.has(id) || listed.has(id)), 20_000, `every acknowledged alert of ${user}`);
      const other = user === 'u1' ? acked.u2 : acked.u1;
      for (const id of tab.ids) expect(other.has(id)).toBe(false);
      expect(tab.repeatsWithinConnection).toEqual([]);
      tab.close();
    }
  }, 120_000);
});
