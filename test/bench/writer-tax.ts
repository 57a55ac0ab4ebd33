/**
 * What pgbell costs the application's writers, and how fast a bulk insert fans out.
 *
 *   writer tax   single-row autocommit INSERTs/s with pgbell's triggers off (ALTER TABLE …
 *                DISABLE TRIGGER USER), then on in each mode (notify, poll, wal) with `pgbell
 *                start` running in that mode (in WAL mode its replication stream decodes as the
 *                writers write), at 1, 8 and 32 concurrent writers, same database, same run;
 *   bulk         one INSERT … SELECT of 10,000 rows for 200 users, triggers on vs off;
 *   fan-out      the same statement with `pgbell start` running (notify and WAL mode) and one
 *                socket per user: time from the statement's commit acknowledgement to the last
 *                of the 10,000 alerts arriving (every socket must get exactly its 50).
 *
 *   npm run bench:writer -- [--seconds 3]
 *   BENCH_DATABASE_URL=postgres://... to use a server you have (a scratch database is created on it);
 *   otherwise embedded Postgres is started in a temp dir.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import pg from 'pg';
import WebSocket from 'ws';
import { secretKey, signSessionToken } from '../../src/auth.js';
import { migrate } from '../../src/db/migrate.js';
import { freePort } from '../../src/cli/embedded.js';
import { databaseUrl } from '../helpers/pg.js';
import { benchServer } from './server.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' } } });
const SECONDS = Number(values.seconds);
const SECRET = 'bench-secret-bench-secret-bench-secret';
const USERS = 200;
const ROWS = 10_000;

async function main() {
  const { url: serverUrl, stop: cleanup } = await benchServer();
  const dbName = `pgbell_bench_${process.pid}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const url = databaseUrl(serverUrl, dbName);
  try {
    await migrate(url, { channel: 'pgbell' });
    const users = Array.from({ length: USERS }, (_, i) => `u${i}`);
    await sqlOnce(url, `INSERT INTO "User" (id, email) SELECT u, u || '@example.test' FROM unnest($1::text[]) u`, [users]);
    const version = (await sqlOnce(url, 'SHOW server_version'))[0].server_version;
    console.log(`PostgreSQL ${version}; ${SECONDS} s per writer-tax run\n`);

    console.log('writer tax: single-row autocommit INSERTs per second (ratio to triggers off)');
    for (const writers of [1, 8, 32]) {
      await setTriggers(url, false);
      const off = await insertRate(url, writers);
      await setTriggers(url, true);
      const cells: string[] = [];
      for (const mode of MODES) {
        await setMode(url, mode);
        const daemon = await startDaemonProcess(url, mode);
        try {
          const on = await insertRate(url, writers);
          cells.push(`${mode} ${on.toFixed(0).padStart(6)}/s (${(on / off).toFixed(2)})`);
          if (mode === 'wal' && writers === 32) walAt32 = on / off;
        } finally {
          await stopDaemonProcess(daemon);
        }
      }
      console.log(`  ${String(writers).padStart(2)} writer(s): off ${off.toFixed(0).padStart(6)}/s   ${cells.join('   ')}`);
    }
    console.log(`  goal: WAL mode keeps >= 0.90 of the triggers-off rate at 32 writers: ${walAt32 >= 0.9 ? 'met' : 'missed'} (${walAt32.toFixed(2)})`);
    await setMode(url, 'notify');

    console.log(`\nbulk: one statement inserting ${ROWS} rows for ${USERS} users (median of 5)`);
    await setTriggers(url, false);
    const bulkOff = await bulkMs(url);
    await setTriggers(url, true);
    const bulkOn = await bulkMs(url);
    console.log(`  triggers off ${bulkOff.toFixed(1)} ms   on ${bulkOn.toFixed(1)} ms   ratio ${(bulkOn / bulkOff).toFixed(2)}`);

    for (const mode of ['notify', 'wal'] as const) {
      await setMode(url, mode);
      console.log(`\nfan-out (${mode} mode): the same statement with pgbell start running, ${USERS} sockets (one per user)`);
      const port = await freePort();
      const daemon = await startDaemonProcess(url, mode, port);
      try {
        const sockets = await Promise.all(users.map((u) => connectSynced(`ws://127.0.0.1:${port}/`, u)));
        for (let round = 0; round < 3; round++) {
          const received = new Map<string, number>();
          let total = 0;
          let last = 0;
          const all = new Promise<void>((resolve) => {
            for (const [i, ws] of sockets.entries()) {
              ws.removeAllListeners('message');
              ws.on('message', (data) => {
                const m = JSON.parse(String(data));
                if (m.type !== 'notification') return;
                if (m.alert.userId !== users[i]) throw new Error(`socket of ${users[i]} got an alert of ${m.alert.userId}`);
                received.set(users[i]!, (received.get(users[i]!) ?? 0) + 1);
                if (++total === ROWS) {
                  last = performance.now();
                  resolve();
                }
              });
            }
          });
          const c = new pg.Client({ connectionString: url });
          await c.connect();
          await c.query(`INSERT INTO "Alert" ("userId", title) SELECT 'u' || (i % ${USERS}), 'bulk ' || i FROM generate_series(0, ${ROWS - 1}) i`);
          const acked = performance.now();
          await c.end();
          await all;
          const exact = [...received.values()].every((n) => n === ROWS / USERS) && received.size === USERS;
          console.log(`  round ${round + 1}: commit ack → last of ${ROWS} alerts delivered: ${(last - acked).toFixed(1)} ms (${((ROWS / (last - acked)) * 1000).toFixed(0)} alerts/s); every socket exactly ${ROWS / USERS}: ${exact}`);
        }
        for (const ws of sockets) ws.close();
      } finally {
        await stopDaemonProcess(daemon);
      }
    }
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
    await cleanup();
  }
}

const MODES = ['notify', 'poll', 'wal'] as const;
type Mode = (typeof MODES)[number];
let walAt32 = 0;

/** Triggers (and the publication) for a mode, as `pgbell migrate` with PGBELL_MODE sets them. */
async function setMode(url: string, mode: Mode): Promise<void> {
  await migrate(url, { channel: mode === 'notify' ? 'pgbell' : '', publish: mode === 'wal' });
}

/** `pgbell start` in a mode; resolves once it listens (in WAL mode, once it streams). */
async function startDaemonProcess(url: string, mode: Mode, port?: number): Promise<ChildProcess> {
  const p = port ?? (await freePort());
  const daemon = spawn(process.execPath, ['bin/pgbell.js', 'start'], {
    env: { PATH: process.env.PATH, DATABASE_URL: url, SESSION_SECRET: SECRET, PORT: String(p), HOST: '127.0.0.1', LOG_LEVEL: 'warn', PGBELL_MODE: mode },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  for (let i = 0; ; i++) {
    const ok = await fetch(`http://127.0.0.1:${p}/health`).then((r) => r.status === 200, () => false);
    if (ok) return daemon;
    if (i > 200) throw new Error(`pgbell start (${mode} mode) did not become healthy`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopDaemonProcess(daemon: ChildProcess): Promise<void> {
  daemon.kill('SIGTERM');
  if (daemon.exitCode === null) await new Promise((r) => daemon.once('close', r));
}

async function sqlOnce(url: string, text: string, params: unknown[] = []): Promise<any[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows;
  } finally {
    await c.end();
  }
}

async function setTriggers(url: string, on: boolean): Promise<void> {
  await sqlOnce(url, `ALTER TABLE "Alert" ${on ? 'ENABLE' : 'DISABLE'} TRIGGER USER`);
}

async function insertRate(url: string, writers: number): Promise<number> {
  const clients = await Promise.all(
    Array.from({ length: writers }, async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      return c;
    }),
  );
  let n = 0;
  const end = performance.now() + SECONDS * 1000;
  const start = performance.now();
  await Promise.all(
    clients.map(async (c, w) => {
      for (let i = 0; performance.now() < end; i++) {
        await c.query(`INSERT INTO "Alert" ("userId", title) VALUES ($1, 'tax')`, [`u${(w * 7919 + i) % USERS}`]);
        n++;
      }
    }),
  );
  const rate = n / ((performance.now() - start) / 1000);
  await Promise.all(clients.map((c) => c.end()));
  return rate;
}

async function bulkMs(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    await c.query(`INSERT INTO "Alert" ("userId", title) SELECT 'u' || (i % ${USERS}), 'bulk ' || i FROM generate_series(0, ${ROWS - 1}) i`);
    times.push(performance.now() - t);
  }
  await c.end();
  return times.sort((a, b) => a - b)[2]!;
}

async function connectSynced(url: string, userId: string): Promise<WebSocket> {
  const token = await signSessionToken(secretKey(SECRET), { userId, ttlSeconds: 600 });
  for (let i = 0; ; i++) {
    try {
      const ws = await new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(url);
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      });
      ws.send(JSON.stringify({ type: 'auth', token }));
      await new Promise<void>((resolve) => ws.on('message', (d) => JSON.parse(String(d)).type === 'synced' && resolve()));
      return ws;
    } catch (err) {
      if (i > 100) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
