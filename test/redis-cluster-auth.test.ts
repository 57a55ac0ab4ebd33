/**
 * Redis Cluster fan-out on a cluster with requirepass: the password in REDIS_CLUSTER_NODES
 * reaches every node's client (discovered ones too), and a daemon whose seed list names only
 * the master that dies rebuilds from the nodes it had discovered. Nothing is lost or leaks; no
 * output shows the password.
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
if (!have && process.env.PGBELL_REQUIRE_REDIS === '1') throw new Error('PGBELL_REQUIRE_REDIS=1 but /usr/bin/redis-server is missing (apt-get install redis-server)');

const PASSWORD = 'cluster-pw-7f3a';
let cluster: TestCluster;
let db: string;
const daemons: TestDaemon[] = [];
let users: string[];
let usersByMaster: Map<number, string[]>;

beforeAll(async () => {
  if (!have) return;
  cluster = await startRedisCluster({ password: PASSWORD });
  db = await freshDatabase();
  const kdb = createDb(db);
  const id = await databaseId(kdb);
  await kdb.destroy();
  const masters = await cluster.masters();
  usersByMaster = new Map(masters.map((m) => [m.port, []]));
  for (let i = 0; [...usersByMaster.values()].some((list) => list.length < 1); i++) {
    const user = `p${i}`;
    const slot = Number((await cluster.cli(cluster.nodes[0]!.port, 'cluster', 'keyslot', `pgbell:${id}:pgbell:u:${user}`)).trim());
    const owner = masters.find((m) => m.slots.some(([a, b]) => slot >= a && slot <= b))!;
    const list = usersByMaster.get(owner.port)!;
    if (list.length < 1) list.push(user);
  }
  users = [...usersByMaster.values()].flat();
  await query(db, `INSERT INTO "User" (id, email) SELECT u, u || '@example.test' FROM unnest($1::text[]) u`, [users]);
  const [victimPort] = [...usersByMaster.keys()];
  const victimUrl = cluster.nodes.find((n) => n.port === victimPort)!.url;
  // The first knows every node; the second only the master that will die.
  daemons.push(await startTestDaemon(db, { fanout: 'redis', redisClusterNodes: cluster.urls }));
  daemons.push(await startTestDaemon(db, { fanout: 'redis', redisClusterNodes: [victimUrl] }));
}, 60_000);
afterAll(async () => {
  for (const d of daemons) await d.stop();
  await cluster?.stop();
});

describe.skipIf(!have)('a Redis Cluster with requirepass', () => {
  it('every node is reached with the password; a daemon seeded with only the master that dies recovers; nothing lost or leaked', async () => {
    const tabs = await Promise.all(daemons.flatMap((d) => users.map(async (user) => ({ user, tab: await new Tab(await tokenFor(user)).connect(d.url) }))));
    const ids = new Map<string, Set<string>>(users.map((u) => [u, new Set()]));
    let stop = false;
    let written = 0;
    const writing = (async () => {
      for (let i = 0; !stop; i++) {
        const user = users[i % users.length]!;
        const [row] = await query<{ id: string }>(db, `INSERT INTO "Alert" ("userId", title) VALUES ($1, $2) RETURNING id`, [user, `w${i}`]);
        ids.get(user)!.add(row!.id);
        written++;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await until(() => written > 30, 20_000, 'writes before the kill');
    const [victimPort] = [...usersByMaster.keys()];
    cluster.nodes.find((n) => n.port === victimPort)!.process.kill('SIGKILL');
    await until(async () => !(await cluster.masters()).some((m) => m.port === victimPort), 30_000, 'the replica promoted');
    await cluster.healthy(30_000);
    const at = written;
    await until(() => written > at + 60, 30_000, 'writes after the failover');
    stop = true;
    await writing;
    for (const { user, tab } of tabs) {
      const want = ids.get(user)!;
      await until(() => [...want].every((id) => tab.ids.has(id)), 30_000, `every alert of ${user}`);
      expect(tab.ids).toEqual(want);
    }
    for (const d of daemons) expect((await health(d.http)).status).toBe(200);
    for (const d of daemons) expect(JSON.stringify(d.logs.lines)).not.toContain(PASSWORD);
    for (const { tab } of tabs) tab.close();
  }, 120_000);

  it('pgbell doctor reaches the cluster with the password and never prints it', async () => {
    const r = await run(['doctor'], cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PGBELL_FANOUT: 'redis', REDIS_CLUSTER_NODES: cluster.nodes.filter((n) => n.process.exitCode === null && n.process.signalCode === null).map((n) => n.url).join(',') }));
    expect(r.stdout).toMatch(/✓ redis cluster: state ok via redis:\/\/:\*\*\*@127\.0\.0\.1:\d+/);
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
  });

  it('a config error about REDIS_CLUSTER_NODES does not print the password', async () => {
    const r = await run(['start'], cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PGBELL_FANOUT: 'redis', REDIS_CLUSTER_NODES: `redis://:${PASSWORD}@127.0.0.1:1,http://:${PASSWORD}@x` }));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/REDIS_CLUSTER_NODES must be/);
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
  });
});
