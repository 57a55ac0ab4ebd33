/**
 * Redis Cluster fan-out over TLS with a password: REDIS_CLUSTER_NODES names two replicas only,
 * so every master is a node discovered from the topology, and its client must get rediss:// and
 * the password from the seeds. The daemon trusts the cluster's CA through NODE_EXTRA_CA_CERTS,
 * which Node reads at process start: the daemon and `pgbell doctor` run as processes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseId } from '../src/db/changes.js';
import { createDb } from '../src/db/connect.js';
import { cleanEnv, launch, run, type Launched } from './helpers/cli.js';
import { SECRET, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { haveRedisServer, startRedisCluster, type TestCluster } from './helpers/redis-cluster.js';
import { Tab, until } from './helpers/tab.js';

const have = haveRedisServer();
if (!have && process.env.PGBELL_REQUIRE_REDIS === '1') throw new Error('PGBELL_REQUIRE_REDIS=1 but /usr/bin/redis-server is missing (apt-get install redis-server)');

const PASSWORD = 'tls-cluster-pw-91c4';
let cluster: TestCluster;
let db: string;
let seeds: string[];
let users: string[];
let daemon: Launched | undefined;

const env = (extra: Record<string, string> = {}) =>
  cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PGBELL_FANOUT: 'redis', REDIS_CLUSTER_NODES: seeds.join(','), NODE_EXTRA_CA_CERTS: cluster.caFile!, ...extra });

beforeAll(async () => {
  if (!have) return;
  cluster = await startRedisCluster({ password: PASSWORD, tls: true });
  db = await freshDatabase();
  const kdb = createDb(db);
  const id = await databaseId(kdb);
  await kdb.destroy();
  const masters = await cluster.masters();
  // Two users on every master, found by the hash slot of their channel.
  const byMaster = new Map<number, string[]>(masters.map((m) => [m.port, []]));
  for (let i = 0; [...byMaster.values()].some((list) => list.length < 2); i++) {
    const user = `t${i}`;
    const slot = Number((await cluster.cli(cluster.nodes[0]!.port, 'cluster', 'keyslot', `pgbell:${id}:pgbell:u:${user}`)).trim());
    const list = byMaster.get(masters.find((m) => m.slots.some(([a, b]) => slot >= a && slot <= b))!.port)!;
    if (list.length < 2) list.push(user);
  }
  users = [...byMaster.values()].flat();
  await query(db, `INSERT INTO "User" (id, email) SELECT u, u || '@example.test' FROM unnest($1::text[]) u`, [users]);
  seeds = cluster.nodes.filter((n) => !byMaster.has(n.port)).slice(0, 2).map((n) => n.url);
}, 60_000);
afterAll(async () => {
  daemon?.child.kill('SIGTERM');
  await daemon?.exited;
  await cluster?.stop();
});

describe.skipIf(!have)('a Redis Cluster over TLS with requirepass', () => {
  it('a daemon seeded with two replicas reaches every master over TLS; every tab gets exactly its user’s alerts', async () => {
    daemon = launch(['start'], env({ PORT: '0', HOST: '127.0.0.1' }));
    const [, url] = await daemon.waitFor(/pgbell listening on (ws:\/\/127\.0\.0\.1:\d+\/)/);
    const tabs = await Promise.all(users.map(async (user) => ({ user, tab: await new Tab(await tokenFor(user)).connect(url!) })));
    const ids = new Map<string, Set<string>>(users.map((u) => [u, new Set()]));
    // Five transactions, each with two alerts for every user.
    for (let i = 0; i < 5; i++) {
      const rows = await query<{ id: string; userId: string }>(db, `INSERT INTO "Alert" ("userId", title) SELECT u, 'w${i}' FROM unnest($1::text[]) u, generate_series(1, 2) RETURNING id, "userId"`, [users]);
      for (const row of rows) ids.get(row.userId)!.add(row.id);
    }
    for (const { user, tab } of tabs) {
      const want = ids.get(user)!;
      await until(() => [...want].every((id) => tab.ids.has(id)), 20_000, `every alert of ${user}`);
      expect(tab.ids).toEqual(want);
    }
    for (const { tab } of tabs) tab.close();
    expect(daemon.stdout()).not.toMatch(/redis cluster (node )?error/);
    expect(daemon.stdout() + daemon.stderr()).not.toContain(PASSWORD);
  }, 60_000);

  it('pgbell doctor reaches the cluster over TLS with the CA, fails without it, and never prints the password', async () => {
    const r = await run(['doctor'], env());
    expect(r.stdout).toMatch(/✓ redis cluster: state ok via rediss:\/\/:\*\*\*@127\.0\.0\.1:\d+: 3 masters serve all 16384 slots/);
    const { NODE_EXTRA_CA_CERTS: _, ...untrusted } = env();
    const u = await run(['doctor'], untrusted);
    expect(u.stdout).toMatch(/✗ redis cluster: no node of REDIS_CLUSTER_NODES answers \(rediss:\/\/:\*\*\*@127\.0\.0\.1:\d+: .*certificate/);
    expect(r.stdout + r.stderr + u.stdout + u.stderr).not.toContain(PASSWORD);
  });
});
