/**
 * Redis fan-out through one Redis and through a Redis Cluster, same run: three `pgbell start`
 * nodes with PGBELL_FANOUT=redis, SOCKETS sockets of USERS users spread over them, and bursts of
 * one statement inserting one alert per user (each reaches every socket of its user). Prints
 * commit acknowledgement → last delivery and deliveries/s per burst, and checks every socket got
 * exactly its user's alerts.
 *
 *   npm run bench:redis -- [--sockets 10000] [--users 1000] [--rounds 5]
 *   BENCH_DATABASE_URL=postgres://… to use a server you have; BENCH_REDIS_URL (default
 *   redis://127.0.0.1:6379) for the single Redis. The cluster (3 masters, 3 replicas) is started
 *   from Debian's redis-server on loopback (test/helpers/redis-cluster.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import pg from 'pg';
import WebSocket from 'ws';
import { secretKey, signSessionToken } from '../../src/auth.js';
import { migrate } from '../../src/db/migrate.js';
import { freePort } from '../../src/cli/embedded.js';
import { databaseUrl } from '../helpers/pg.js';
import { startRedisCluster } from '../helpers/redis-cluster.js';
import { benchServer } from './server.js';

const { values } = parseArgs({ options: { sockets: { type: 'string', default: '10000' }, users: { type: 'string', default: '1000' }, rounds: { type: 'string', default: '5' } } });
const SOCKETS = Number(values.sockets);
const USERS = Number(values.users);
const ROUNDS = Number(values.rounds);
const SECRET = 'bench-secret-bench-secret-bench-secret';
const NODES = 3;

async function main() {
  const { url: serverUrl, stop: stopServer } = await benchServer();
  const dbName = `pgbell_bench_redis_${process.pid}`;
  await sql(serverUrl, `CREATE DATABASE ${dbName}`);
  const url = databaseUrl(serverUrl, dbName);
  const cluster = await startRedisCluster();
  try {
    await migrate(url, { channel: 'pgbell' });
    const users = Array.from({ length: USERS }, (_, i) => `u${i}`);
    await sql(url, `INSERT INTO "User" (id, email) SELECT u, u || '@example.test' FROM unnest($1::text[]) u`, [users]);
    console.log(`${NODES} pgbell nodes, ${SOCKETS} sockets over ${USERS} users; each burst: one statement, one alert per user (${SOCKETS} deliveries)\n`);
    const rows: string[] = [];
    for (const [name, env] of [
      ['one Redis', { REDIS_URL: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379' }],
      ['Redis Cluster (3 masters)', { REDIS_CLUSTER_NODES: cluster.urls.slice(0, 2).join(',') }],
    ] as const) {
      const result = await run(url, users, env);
      const rates = result.map((r) => SOCKETS / (r / 1000)).sort((a, b) => a - b);
      const ms = [...result].sort((a, b) => a - b);
      rows.push(`| ${name} | ${ms[Math.floor(ms.length / 2)]!.toFixed(0)} ms | ${rates[Math.floor(rates.length / 2)]!.toFixed(0)}/s | ${rates[0]!.toFixed(0)}–${rates.at(-1)!.toFixed(0)}/s |`);
    }
    console.log('\n| fan-out | commit ack → last delivery (median) | deliveries/s (median) | range |\n|---|---|---|---|');
    for (const r of rows) console.log(r);
  } finally {
    await cluster.stop();
    await sql(serverUrl, `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await stopServer();
  }
}

/** Starts the nodes, connects the sockets, runs the bursts; each burst's ack → last delivery in ms. */
async function run(url: string, users: string[], redis: Record<string, string>): Promise<number[]> {
  const ports: number[] = [];
  const daemons: ChildProcess[] = [];
  for (let i = 0; i < NODES; i++) {
    const port = await freePort();
    ports.push(port);
    daemons.push(
      spawn(process.execPath, ['bin/pgbell.js', 'start'], {
        env: { PATH: process.env.PATH, DATABASE_URL: url, SESSION_SECRET: SECRET, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', PGBELL_FANOUT: 'redis', MAX_CONNECTIONS: String(SOCKETS), ...redis },
        stdio: 'inherit',
      }),
    );
  }
  try {
    for (const port of ports) await until(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => null))?.status === 200);
    const tokens = await Promise.all(users.map((u) => signSessionToken(secretKey(SECRET), { userId: u, ttlSeconds: 3600 })));
    const sockets: Array<{ ws: WebSocket; user: string }> = [];
    const t0 = performance.now();
    for (let i = 0; i < SOCKETS; i += 200) {
      const wave = Array.from({ length: Math.min(200, SOCKETS - i) }, (_, k) => i + k);
      sockets.push(...(await Promise.all(wave.map(async (j) => ({ ws: await connect(ports[j % NODES]!, tokens[j % users.length]!), user: users[j % users.length]! })))));
    }
    console.log(`${Object.keys(redis)[0]}: ${SOCKETS} sockets connected and live in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const times: number[] = [];
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    for (let round = 0; round < ROUNDS; round++) {
      const got = new Map<WebSocket, number>();
      let total = 0;
      let last = 0;
      const all = new Promise<void>((resolve) => {
        for (const { ws, user } of sockets) {
          ws.removeAllListeners('message');
          ws.on('message', (data) => {
            const m = JSON.parse(String(data));
            const alerts = m.type === 'notification' ? [m.alert] : m.type === 'notifications' ? m.alerts : [];
            for (const a of alerts) {
              if (a.userId !== user) throw new Error(`a socket of ${user} got an alert of ${a.userId}`);
              got.set(ws, (got.get(ws) ?? 0) + 1);
              if (++total === SOCKETS) {
                last = performance.now();
                resolve();
              }
            }
          });
        }
      });
      await c.query(`INSERT INTO "Alert" ("userId", title) SELECT u, 'burst ${round}' FROM unnest($1::text[]) u`, [users]);
      const acked = performance.now();
      await all;
      if (![...got.values()].every((n) => n === 1) || got.size !== SOCKETS) throw new Error('a socket did not get exactly one alert');
      times.push(last - acked);
      console.log(`  burst ${round + 1}: ${(last - acked).toFixed(0)} ms, ${(SOCKETS / ((last - acked) / 1000)).toFixed(0)} deliveries/s`);
      await new Promise((r) => setTimeout(r, 500));
    }
    await c.end();
    for (const { ws } of sockets) ws.terminate();
    return times;
  } finally {
    for (const d of daemons) d.kill('SIGTERM');
    await Promise.all(daemons.map((d) => new Promise((r) => d.once('close', r))));
  }
}

async function connect(port: number, token: string): Promise<WebSocket> {
  for (let attempt = 0; ; attempt++) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    const ok = await new Promise<boolean>((resolve) => {
      ws.once('open', () => ws.send(JSON.stringify({ type: 'auth', token })));
      ws.on('message', (d) => JSON.parse(String(d)).type === 'synced' && resolve(true));
      ws.once('close', () => resolve(false));
      ws.once('error', () => resolve(false));
    });
    if (ok) return ws;
    if (attempt > 50) throw new Error(`a socket to ${port} never went live`);
    await new Promise((r) => setTimeout(r, 50 + Math.random() * 200));
  }
}

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; !(await check()); i++) {
    if (i > 300) throw new Error('a pgbell node did not come up');
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function sql(url: string, text: string, params: unknown[] = []): Promise<any[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows;
  } finally {
    await c.end();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
