/**
 * PGBELL_FANOUT=redis on a real Redis Cluster (3 masters, 3 replicas of Debian's redis-server on
 * loopback, see test/helpers/redis-cluster.ts): users whose channels hash to every master, three
 * pgbell nodes given only two of the cluster's nodes. Every tab gets exactly its user's alerts;
 * a master SIGKILLed while alerts are written is replaced by its replica, the nodes subscribe
 * again and catch up, and nothing is lost or leaks.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseId } from '../src/db/changes.js';
import { createDb } from '../src/db/connect.js';
import { cleanEnv, run } from './helpers/cli.js';
import { SECRET, health, startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { haveRedisServer, startRedisCluster, type TestCluster } from './helpers/redis-cluster.js';
import { Tab, until } from './helpers/tab.js';

const have = haveRedisServer();
if (!have) {
  if (process.env.PGBELL_REQUIRE_REDIS === '1') throw new Error('PGBELL_REQUIRE_REDIS=1 but /usr/bin/redis-server is missing (apt-get install redis-server)');
  console.warn('Redis Cluster tests skipped: /usr/bin/redis-server not found (apt-get install redis-server)');
}

let cluster: TestCluster;
let db: string;
let nodes: TestDaemon[] = [];
/** Users by the master (port) their channel hashes to. */
let usersByMaster: Map<number, string[]>;
/** The database's id: part of every channel's name. */
let dbId: string;
let users: string[];

beforeAll(async () => {
  if (!have) return;
  cluster = await startRedisCluster();
  db = await freshDatabase();
  const kdb = createDb(db);
  const id = (dbId = await databaseId(kdb));
  await kdb.destroy();
  const masters = await cluster.masters();
  expect(masters).toHaveLength(3);
  usersByMaster = new Map(masters.map((m) => [m.port, []]));
  // Two users per master, found by asking the cluster where each one's channel lives.
  for (let i = 0; [...usersByMaster.values()].some((list) => list.length < 2); i++) {
    const user = `k${i}`;
    const slot = Number((await cluster.cli(cluster.nodes[0]!.port, 'cluster', 'keyslot', `pgbell:${id}:pgbell:u:${user}`)).trim());
    const owner = masters.find((m) => m.slots.some(([a, b]) => slot >= a && slot <= b))!;
    const list = usersByMaster.get(owner.port)!;
    if (list.length < 2) list.push(user);
  }
  users = [...usersByMaster.values()].flat();
  await query(db, `INSERT INTO "User" (id, email) SELECT u, u || '@example.test' FROM unnest($1::text[]) u`, [users]);
  // Each node knows two of the six cluster nodes; the rest it discovers.
  for (let i = 0; i < 3; i++) nodes.push(await startTestDaemon(db, { fanout: 'redis', redisClusterNodes: cluster.urls.slice(i, i + 2) }));
}, 60_000);
afterAll(async () => {
  for (const n of nodes) await n.stop();
  await cluster?.stop();
});

const doctor = () =>
  run(['doctor'], cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PGBELL_FANOUT: 'redis', REDIS_CLUSTER_NODES: cluster.nodes.filter((n) => n.process.exitCode === null && n.process.signalCode === null).map((n) => n.url).join(',') }));

/** Inserts for every user (or those given) until stopped; the ids it committed, by user. */
function writer(to = users, pauseMs = 5) {
  let stop = false;
  const ids = new Map<string, Set<string>>(to.map((u) => [u, new Set()]));
  let written = 0;
  let failure: unknown = null;
  const done = (async () => {
    for (let i = 0; !stop; i++) {
      const user = to[i % to.length]!;
      const [row] = await query<{ id: string }>(db, `INSERT INTO "Alert" ("userId", title) VALUES ($1, $2) RETURNING id`, [user, `w${i}`]);
      ids.get(user)!.add(row!.id);
      written++;
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
  })().catch((err) => (failure = err));
  return {
    ids,
    wrote(n: number) {
      if (failure) throw failure;
      return written > n;
    },
    get written() {
      return written;
    },
    async stop() {
      stop = true;
      await done;
      if (failure) throw failure;
    },
  };
}

async function expectExactly(tabs: Array<{ user: string; tab: Tab }>, ids: Map<string, Set<string>>): Promise<void> {
  for (const { user, tab } of tabs) {
    const want = ids.get(user)!;
    await until(() => [...want].every((id) => tab.ids.has(id)), 20_000, `every alert of ${user}`);
    // Exactly: nothing of another user, nothing twice on one connection.
    expect(tab.ids).toEqual(want);
    expect(tab.repeatsWithinConnection).toEqual([]);
  }
}

describe.skipIf(!have)('Redis Cluster fan-out', () => {
  it('users on every master, three nodes: every tab gets exactly its user\'s alerts', async () => {
    expect([...usersByMaster.values()].every((list) => list.length === 2)).toBe(true);
    await until(async () => (await Promise.all(nodes.map((n) => health(n.http)))).filter((h) => h.body.listener.relay).length === 1, 10_000, 'one relay');
    const tabs = await Promise.all(nodes.flatMap((n) => users.map(async (user) => ({ user, tab: await new Tab(await tokenFor(user)).connect(n.url) }))));
    const w = writer();
    await until(() => w.wrote(60), 20_000, 'writes');
    await w.stop();
    await expectExactly(tabs, w.ids);
    for (const { tab } of tabs) tab.close();
  }, 60_000);

  it('a slot resharded to another master while tabs are live: the subscriptions follow, nothing is lost or leaks', async () => {
    // A user whose channel's slot is among the first of its master's (reshard moves a master's
    // lowest slots first), so that moving a few hundred slots moves it.
    const masters = await cluster.masters();
    let mover = '';
    let from = masters[0]!;
    let count = 0;
    for (let i = 0; !mover; i++) {
      const slot = Number((await cluster.cli(cluster.nodes[0]!.port, 'cluster', 'keyslot', `pgbell:${dbId}:pgbell:u:m${i}`)).trim());
      for (const m of masters) {
        const start = Math.min(...m.slots.map(([a]) => a));
        const range = m.slots.find(([a, b]) => a === start && slot >= a && slot <= b);
        if (range && slot - start < 300) [mover, from, count] = [`m${i}`, m, slot - start + 1];
      }
    }
    const to = masters.find((m) => m !== from)!;
    await query(db, `INSERT INTO "User" (id, email) VALUES ($1, $1 || '@example.test')`, [mover]);
    const other = users[0]!;
    const tabs = await Promise.all(nodes.flatMap((n) => [mover, other].map(async (user) => ({ user, tab: await new Tab(await tokenFor(user)).connect(n.url) }))));
    // The moved user's alerts as fast as they commit: one is in flight whenever the slot moves.
    const w = writer([mover, other], 0);
    await until(() => w.wrote(50), 20_000, 'writes before the move');
    const id = async (port: number) => (await cluster.cli(port, 'cluster', 'myid')).trim();
    const out = await cluster.cli(from.port, '--cluster', 'reshard', `127.0.0.1:${from.port}`, '--cluster-from', await id(from.port), '--cluster-to', await id(to.port), '--cluster-slots', String(count), '--cluster-yes');
    expect(out).toMatch(/Moving slot/);
    const slot = Number((await cluster.cli(to.port, 'cluster', 'keyslot', `pgbell:${dbId}:pgbell:u:${mover}`)).trim());
    expect((await cluster.masters()).find((m) => m.port === to.port)!.slots.some(([a, b]) => slot >= a && slot <= b)).toBe(true);
    const at = w.written;
    await until(() => w.wrote(at + 100), 20_000, 'writes after the move');
    await w.stop();
    await expectExactly(tabs, w.ids);
    for (const { tab } of tabs) tab.close();
  }, 60_000);

  it('a master SIGKILLed mid-write: its replica takes over, the nodes subscribe again and catch up, nothing is lost or leaks', async () => {
    const tabs = await Promise.all(nodes.flatMap((n) => users.map(async (user) => ({ user, tab: await new Tab(await tokenFor(user)).connect(n.url) }))));
    const w = writer();
    await until(() => w.wrote(30), 20_000, 'writes before the kill');
    const [victimPort] = [...usersByMaster.keys()];
    const victim = cluster.nodes.find((n) => n.port === victimPort)!;
    victim.process.kill('SIGKILL');
    // The others notice within cluster-node-timeout (1 s) and promote its replica.
    await until(async () => !(await cluster.masters()).some((m) => m.port === victimPort), 30_000, 'the replica promoted');
    await cluster.healthy(30_000);
    const at = w.written;
    // The relay keeps publishing: alerts written after the failover arrive too.
    await until(() => w.wrote(at + 30), 20_000, 'writes after the failover');
    await w.stop();
    await expectExactly(tabs, w.ids);
    for (const n of nodes) expect((await health(n.http)).body.listener.state).toBe('connected');
    for (const { tab } of tabs) tab.close();
    expect((await doctor()).stdout).toMatch(new RegExp(`✓ redis cluster: state ok via .*: 3 masters serve all 16384 slots; failing nodes: 127\\.0\\.0\\.1:${victimPort} \\(master,fail\\)`));
  }, 90_000);

  it('pgbell doctor says when slots have no master left, naming the failed nodes', async () => {
    // A master and its replica both gone: their slots are served by no one.
    const masters = await cluster.masters();
    const lines = (await cluster.cli(masters[0]!.port, 'cluster', 'nodes')).trim().split('\n');
    const idOf = (port: number) => lines.find((l) => l.includes(`:${port}@`))!.split(' ')[0];
    // One that still has a replica (the one promoted earlier has none).
    const master = masters.find((m) => lines.some((l) => l.includes('slave') && l.includes(` ${idOf(m.port)} `) && !l.includes('fail')))!;
    const replicaPort = Number(/:(\d+)@/.exec(lines.find((l) => l.includes('slave') && l.includes(` ${idOf(master.port)} `))!)![1]);
    for (const port of [master!.port, replicaPort]) cluster.nodes.find((n) => n.port === port)!.process.kill('SIGKILL');
    await until(async () => /cluster_state:fail/.test(await cluster.cli(cluster.nodes.find((n) => n.port !== master!.port && n.port !== replicaPort && n.process.exitCode === null && n.process.signalCode === null)!.port, 'cluster', 'info').catch(() => '')), 20_000, 'the cluster failing');
    const r = await doctor();
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`✗ redis cluster: state fail via .*: 1\\d{4} of 16384 slots served \\(5\\d{3} failed, 0 possibly failing\\).*127\\.0\\.0\\.1:${master!.port} \\(master,fail\\).*: a replica must take over or the node come back`));
  }, 60_000);
});
