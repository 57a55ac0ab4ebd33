/**
 * PGBELL_FANOUT=redis against the machine's Redis (127.0.0.1:6379): one relay LISTENs for the
 * whole fleet and publishes per user; nodes subscribe for the users they hold. Killing the relay
 * while writing loses nothing: another node takes its lock and publishes from the recorded horizon.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, run } from './helpers/cli.js';
import { SECRET, captureLogger, health, startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { TestClient, sleep } from './helpers/client.js';
import { emptyDatabase, freshDatabase, query } from './helpers/pg.js';
import { RedisFanout } from '../src/fanout/redis.js';
import { Tab, until } from './helpers/tab.js';
import { haveRedis, REDIS_URL } from './helpers/redis.js';

if (!haveRedis) {
  if (process.env.PGBELL_REQUIRE_REDIS === '1') throw new Error(`PGBELL_REQUIRE_REDIS=1 but nothing answers at ${REDIS_URL}`);
  console.warn(`Redis fan-out tests skipped: nothing answers at ${REDIS_URL} (start redis-server, or set TEST_REDIS_URL)`);
}
// Users unique to this run: Redis channels are shared by every database on this Redis.
const tag = Math.random().toString(36).slice(2, 8);
const USERS = ['a', 'b', 'c'].map((u) => `${u}-${tag}`);

let db: string;
let nodes: TestDaemon[] = [];

beforeAll(async () => {
  if (!haveRedis) return;
  db = await freshDatabase();
  await query(db, `INSERT INTO "User" (id, email) SELECT u, u || '@example.test' FROM unnest($1::text[]) u`, [USERS]);
  for (let i = 0; i < 3; i++) nodes.push(await startTestDaemon(db, { fanout: 'redis', redisUrl: REDIS_URL }));
});
afterAll(async () => {
  for (const n of nodes) await n.stop();
});

/**
 * Three nodes (or what is left of `fleet`) with one relay between them: each tab gets exactly its
 * user's alerts while the relay is killed mid-write and another takes over.
 */
async function relayKilledMidWrite(db: string, fleet: TestDaemon[]): Promise<TestDaemon[]> {
  let nodes = fleet;
  const listenConnections = async () =>
    (await query(db, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgbell-listener' AND datname = current_database()`))[0]!.n as number;

  await until(async () => (await Promise.all(nodes.map((n) => health(n.http)))).filter((h) => h.body.listener.relay).length === 1, 10_000, 'one relay');
  expect(await listenConnections()).toBe(1);

  const tabs = await Promise.all(
    nodes.flatMap((n, i) => USERS.map(async (user) => ({ user, node: i, tab: await new Tab(await tokenFor(user)).connect(n.url) }))),
  );
  let stop = false;
  let written = 0;
  const writer = (async () => {
    for (let i = 0; !stop; i++) {
      await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ($1, $2)`, [USERS[i % USERS.length], `w${i}`]).catch(() => {});
      written++;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  await until(() => written > 30, 10_000, 'writes');

  // Kill the relay while the writer runs; its tabs move to another node.
  const healths = await Promise.all(nodes.map((n) => health(n.http)));
  const relayIndex = healths.findIndex((h) => h.body.listener.relay);
  const relay = nodes[relayIndex]!;
  await relay.stop();
  nodes = nodes.filter((n) => n !== relay);
  const target = nodes[0]!;
  await Promise.all(tabs.filter((t) => t.node === relayIndex).map(({ tab }) => tab.connect(target.url)));
  await until(async () => (await Promise.all(nodes.map((n) => health(n.http)))).some((h) => h.body.listener.relay), 10_000, 'a new relay');
  const at = written;
  await until(() => written > at + 30, 10_000, 'writes after the takeover');
  stop = true;
  await writer;
  expect(await listenConnections()).toBe(1);

  for (const { user, tab } of tabs) {
    const truth = new Set((await query(db, `SELECT id FROM "Alert" WHERE "userId" = $1`, [user])).map((r) => r.id));
    await until(() => tab.ids.size >= truth.size, 15_000, `all ${truth.size} alerts of ${user} (have ${tab.ids.size})`);
    expect(tab.ids).toEqual(truth);
    expect(tab.repeatsWithinConnection).toEqual([]);
    tab.close();
  }
  return nodes;
}

describe.skipIf(!haveRedis)('Redis fan-out', () => {
  it('three nodes hold one LISTEN connection between them; each tab gets exactly its user\'s alerts; killing the relay mid-write loses nothing', async () => {
    nodes = await relayKilledMidWrite(db, nodes);
  }, 60_000);

  it('a forged horizon on the channel is not recorded as the relay horizon, and moves no cursor', async () => {
    await until(async () => (await Promise.all(nodes.map((n) => health(n.http)))).some((h) => h.body.listener.relay), 10_000, 'a relay');
    const user = USERS[0]!;
    const tab = await new Tab(await tokenFor(user)).connect(nodes[0]!.url);
    await query(db, `SELECT pg_notify('pgbell', '{"txid":"999999999999","xmin":"999999999999"}')`);
    const truth = new Set<string>();
    for (let i = 0; i < 3; i++) truth.add((await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ($1, $2) RETURNING id`, [user, `after forgery ${i}`]))[0]!.id);
    await until(() => tab.ids.size >= truth.size, 10_000, `all ${truth.size} alerts (have ${tab.ids.size})`);
    expect(tab.ids).toEqual(truth);
    const [row] = await query(db, `SELECT "relayTxid"::text::numeric < 999999999999 AS sane, "relayTxid" <= pg_current_xact_id() AS below FROM pgbell.pgbell_state`);
    expect(row).toMatchObject({ sane: true, below: true });
    tab.close();
  }, 30_000);

  it('two deployments on one Redis with the same channel and the same user id never see each other', async () => {
    const other = await freshDatabase(['42']);
    const mine = await freshDatabase(['42']);
    const a = await startTestDaemon(mine, { fanout: 'redis', redisUrl: REDIS_URL });
    const b = await startTestDaemon(other, { fanout: 'redis', redisUrl: REDIS_URL });
    try {
      await until(async () => (await health(a.http)).body.listener.relay && (await health(b.http)).body.listener.relay, 10_000, 'both relays');
      const ta = await TestClient.ready(a.url, await tokenFor('42'));
      const tb = await TestClient.ready(b.url, await tokenFor('42'));
      await query(mine, `INSERT INTO "Alert" ("userId", title) VALUES ('42', 'mine')`);
      await query(other, `INSERT INTO "Alert" ("userId", title) VALUES ('42', 'theirs')`);
      await ta.next((m) => m.type === 'notification');
      await tb.next((m) => m.type === 'notification');
      await sleep(300);
      expect(ta.alerts().map((x) => x.title)).toEqual(['mine']);
      expect(tb.alerts().map((x) => x.title)).toEqual(['theirs']);
      ta.close();
      tb.close();
    } finally {
      await a.stop();
      await b.stop();
    }
  }, 30_000);

  it("a user's second socket waits for the same SSUBSCRIBE confirmation as the first", async () => {
    const fanout = new RedisFanout({ url: REDIS_URL, channel: 'pgbell', databaseId: `w${tag}`, log: captureLogger().log, onChanges: () => {}, onRevoke: () => {}, onResumed: () => {} });
    await fanout.start();
    try {
      let firstDone = false;
      const first = fanout.watch('twin').then(() => (firstDone = true));
      await fanout.watch('twin');
      expect(firstDone).toBe(true);
      await first;
    } finally {
      await fanout.close();
    }
  });

  it('a revocation that sent no notification at all still closes the sockets within a heartbeat (the table is checked)', async () => {
    const quiet = await freshDatabase(['rv']);
    const n = await startTestDaemon(quiet, { fanout: 'redis', redisUrl: REDIS_URL, heartbeatMs: 400 });
    try {
      const c = await TestClient.ready(n.url, await tokenFor('rv'));
      // The revocation trigger is skipped: nothing is published, as when the relay was away.
      await query(quiet, `BEGIN; SET LOCAL session_replication_role = replica; INSERT INTO pgbell.pgbell_revocation ("userId") VALUES ('rv'); COMMIT;`);
      expect((await c.closed).code).toBe(4403);
    } finally {
      await n.stop();
    }
  }, 20_000);

  it("the relay's LISTEN is probed: a relay that hears nothing makes /health 503", async () => {
    const deafDb = await freshDatabase();
    const elsewhere = await emptyDatabase('deaf');
    const n = await startTestDaemon(deafDb, { fanout: 'redis', redisUrl: REDIS_URL, heartbeatMs: 400, listenDatabaseUrl: elsewhere });
    try {
      await until(async () => (await health(n.http)).body.listener.relay === true, 10_000, 'relay');
      await until(async () => (await health(n.http)).status === 503, 10_000, '503');
      expect((await health(n.http)).body.listener.probe.ok).toBe(false);
    } finally {
      await n.stop();
    }
  }, 30_000);

  it('a takeover publishes whole transactions page by page: a delete above the page cut skips nothing', async () => {
    const pdb = await freshDatabase(['pg1']);
    const first = await startTestDaemon(pdb, { fanout: 'redis', redisUrl: REDIS_URL });
    await until(async () => (await health(first.http)).body.listener.relay === true, 10_000, 'first relay');
    // A node that will not try the relay lock again during the test: it holds the tab.
    const holder = await startTestDaemon(pdb, { fanout: 'redis', redisUrl: REDIS_URL, relay: { retryMs: 600_000 } });
    let second: TestDaemon | undefined;
    try {
      const old = (await query(pdb, `INSERT INTO "Alert" ("userId", title) VALUES ('pg1', 'old') RETURNING id`))[0]!.id as string;
      const tab = await new Tab(await tokenFor('pg1')).connect(holder.url);
      await sleep(600); // the relay records its horizon
      await first.stop(); // no relay now
      const ids = (await query(pdb, `INSERT INTO "Alert" ("userId", title) SELECT 'pg1', 'row ' || i FROM generate_series(1, 3) i RETURNING id`)).map((r) => r.id as string);
      await query(pdb, `DELETE FROM "Alert" WHERE id = $1`, [old]);
      second = await startTestDaemon(pdb, { fanout: 'redis', redisUrl: REDIS_URL, relay: { pageRows: 2 } });
      await until(() => ids.every((id) => tab.ids.has(id)) && tab.deleted.has(old), 10_000, 'the 3 rows and the delete');
      tab.close();
    } finally {
      await holder.stop();
      await second?.stop();
    }
  }, 40_000);

  it('a relay horizon from another cluster (ahead of this server) is forgotten, and horizons are recorded again', async () => {
    const rdb = await freshDatabase(['rh']);
    await query(rdb, `UPDATE pgbell.pgbell_state SET "relayTxid" = (pg_current_xact_id()::text::bigint + 1000000)::text::xid8`);
    const n = await startTestDaemon(rdb, { fanout: 'redis', redisUrl: REDIS_URL });
    try {
      await until(async () => (await health(n.http)).body.listener.relay === true, 10_000, 'relay');
      const c = await TestClient.ready(n.url, await tokenFor('rh'));
      await query(rdb, `INSERT INTO "Alert" ("userId", title) VALUES ('rh', 'after')`);
      await c.next((m) => m.type === 'notification');
      await until(async () => (await query(rdb, `SELECT "relayTxid" IS NOT NULL AND "relayTxid" <= pg_current_xact_id() AS ok FROM pgbell.pgbell_state`))[0]!.ok === true, 5000, 'a horizon of this server recorded');
      c.close();
    } finally {
      await n.stop();
    }
  }, 20_000);

  it('pgbell doctor checks the Redis it is given, and says when it does not answer', async () => {
    const env = (url: string) => cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PGBELL_FANOUT: 'redis', REDIS_URL: url });
    expect((await run(['doctor'], env(REDIS_URL))).stdout).toMatch(/✓ redis: Redis [7-9]\.\S+ answers at redis:/);
    const r = await run(['doctor'], env('redis://127.0.0.1:1'));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/✗ redis: REDIS_URL does not answer \(redis:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/);
  });
});

describe.skipIf(!haveRedis)('Redis fan-out in WAL mode', () => {
  it('the relay streams by logical replication (no NOTIFY); killing it mid-write loses nothing', async () => {
    const walDb = await freshDatabase();
    await query(walDb, `INSERT INTO "User" (id, email) SELECT u, u || '@example.test' FROM unnest($1::text[]) u`, [USERS]);
    const r = await run(['migrate'], cleanEnv({ DATABASE_URL: walDb, PGBELL_MODE: 'wal' }));
    expect(r.code).toBe(0);
    const fleet: TestDaemon[] = [];
    try {
      for (let i = 0; i < 3; i++) fleet.push(await startTestDaemon(walDb, { fanout: 'redis', redisUrl: REDIS_URL, mode: 'wal' }));
      await relayKilledMidWrite(walDb, fleet);
      const walsenders = await query(walDb, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'walsender' AND datname = current_database()`);
      expect(walsenders[0]!.n).toBe(1);
    } finally {
      for (const n of fleet) await n.stop();
    }
  }, 60_000);
});
