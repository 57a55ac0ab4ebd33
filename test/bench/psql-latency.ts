/**
 * Insert-to-socket latency with the real tools: `pgbell start` as its own process, one `psql`
 * process inserting N alerts (one autocommit INSERT each, spaced by pg_sleep), one WebSocket
 * client here. Latency = the client's receipt time − the row's "createdAt" (now() at the start
 * of the INSERT's transaction); both clocks are this machine's wall clock.
 *
 *   npm run bench:psql -- [--n 20] [--gap-ms 50]
 *   BENCH_DATABASE_URL=postgres://... to use a server you have (a scratch database is created on it);
 *   otherwise embedded Postgres is started in a temp dir.
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import pg from 'pg';
import WebSocket from 'ws';
import { secretKey, signSessionToken } from '../../src/auth.js';
import { migrate } from '../../src/db/migrate.js';
import { freePort } from '../../src/cli/embedded.js';
import { databaseUrl } from '../helpers/pg.js';
import { benchServer } from './server.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '20' }, 'gap-ms': { type: 'string', default: '50' } } });
const N = Number(values.n);
const GAP = Number(values['gap-ms']) / 1000;
const SECRET = 'bench-secret-bench-secret-bench-secret';
const now = () => performance.timeOrigin + performance.now();

async function main() {
  const { url: serverUrl, stop: cleanup } = await benchServer();
  const dbName = `pgbell_bench_${process.pid}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const url = databaseUrl(serverUrl, dbName);
  const port = await freePort();
  const daemon = spawn(process.execPath, ['bin/pgbell.js', 'start'], {
    env: { PATH: process.env.PATH, DATABASE_URL: url, SESSION_SECRET: SECRET, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
    stdio: 'inherit',
  });
  try {
    await migrate(url, { channel: 'pgbell' });
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query(`INSERT INTO "User" (id, email) VALUES ('bench', 'bench@example.test')`);
    await db.end();

    const token = await signSessionToken(secretKey(SECRET), { userId: 'bench', ttlSeconds: 600 });
    const ws = await connectWhenUp(`ws://127.0.0.1:${port}/`);
    const latencies: number[] = [];
    const done = new Promise<void>((resolve) => {
      ws.on('message', (data) => {
        const at = now();
        const msg = JSON.parse(String(data));
        if (msg.type !== 'notification') return;
        latencies.push(at - Date.parse(msg.alert.createdAt) - Number(msg.alert.data.us) / 1000);
        if (latencies.length === N) resolve();
      });
    });
    ws.send(JSON.stringify({ type: 'auth', token }));
    await new Promise<void>((resolve) => ws.on('message', (d) => JSON.parse(String(d)).type === 'synced' && resolve()));

    // createdAt has microseconds, but JS Date only milliseconds: carry the sub-ms part in data.
    const script = Array.from(
      { length: N },
      (_, i) =>
        `INSERT INTO "Alert" ("userId", title, data) VALUES ('bench', 'alert ${i}', jsonb_build_object('us', (extract(microseconds from now())::bigint % 1000)));\nSELECT pg_sleep(${GAP});`,
    ).join('\n');
    const psql = spawn('psql', [url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-o', '/dev/null'], { stdio: ['pipe', 'inherit', 'inherit'] });
    psql.stdin.end(script + '\n');
    await done;
    await new Promise((r) => psql.once('close', r));
    ws.close();

    latencies.sort((a, b) => a - b);
    const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
    const median = N % 2 ? latencies[(N - 1) / 2]! : (latencies[N / 2 - 1]! + latencies[N / 2]!) / 2;
    console.log(`psql INSERT → WebSocket receipt, ${N} alerts, one psql process, pgbell start in its own process`);
    console.log(`  median ${median.toFixed(2)} ms   min ${latencies[0]!.toFixed(2)} ms   p90 ${q(0.9).toFixed(2)} ms   max ${latencies.at(-1)!.toFixed(2)} ms`);
  } finally {
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('close', r));
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
    await cleanup();
  }
}

async function connectWhenUp(url: string): Promise<WebSocket> {
  for (let i = 0; ; i++) {
    try {
      return await new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(url);
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      });
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
