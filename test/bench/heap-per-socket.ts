/**
 * What one idle authenticated socket costs the daemon's heap, by kind of object: a heap
 * snapshot of `pgbell start` with no sockets, another with N, the difference per socket.
 *
 *   npx tsx test/bench/heap-per-socket.ts [--sockets 5000] [--target pgbell|relay]
 *   BENCH_DATABASE_URL=postgres://… (default: the machine's, postgres://postgres@127.0.0.1:5432/postgres)
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { migrate } from '../../src/db/migrate.js';
import { freePort } from '../../src/cli/embedded.js';
import { databaseUrl } from '../helpers/pg.js';
import { query } from '../helpers/pg.js';
import { SECRET, tokenFor } from '../helpers/daemon.js';

const { values: args } = parseArgs({ options: { sockets: { type: 'string', default: '5000' }, target: { type: 'string', default: 'pgbell' } } });
const N = Number(args.sockets);
const admin = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const name = `pgbell_heap_${process.pid}`;
await query(admin, `CREATE DATABASE ${name}`);
const url = databaseUrl(admin, name);
await migrate(url, { channel: 'pgbell' });
const port = await freePort();
const dir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-heap-'));
const bin = args.target === 'relay' ? ['--import', 'tsx', new URL('./peers/relay.ts', import.meta.url).pathname] : [new URL('../../bin/pgbell.js', import.meta.url).pathname, 'start'];
const child = spawn(process.execPath, ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dir}`, ...bin], {
  env: { ...process.env, DATABASE_URL: url, SESSION_SECRET: SECRET, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', MAX_UNAUTHENTICATED: '100000', MAX_CONNECTIONS: '100000', MAX_UNAUTHENTICATED_PER_ADDRESS: '0' },
  stdio: ['ignore', 'inherit', 'inherit', ...(args.target === 'relay' ? (['ipc'] as const) : [])],
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
for (let i = 0; ; i++) {
  const up = await new Promise<boolean>((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => (c.destroy(), resolve(true)));
    c.on('error', () => resolve(false));
  });
  if (up) break;
  if (i > 200) throw new Error('daemon did not start');
  await sleep(100);
}

async function snapshot(): Promise<Map<string, { size: number; count: number }>> {
  const before = new Set(await readdir(dir));
  child.kill('SIGUSR2');
  let file = '';
  for (let i = 0; !file; i++) {
    await sleep(500);
    file = (await readdir(dir)).find((f) => f.endsWith('.heapsnapshot') && !before.has(f)) ?? '';
  }
  // Written when its size stops changing.
  let last = -1;
  for (;;) {
    const size = (await readFile(path.join(dir, file))).length;
    if (size === last && size > 0) break;
    last = size;
    await sleep(1000);
  }
  const snap = JSON.parse(await readFile(path.join(dir, file), 'utf8'));
  const f = snap.snapshot.meta.node_fields as string[];
  const types = snap.snapshot.meta.node_types[0] as string[];
  const [ti, ni, si] = ['type', 'name', 'self_size'].map((k) => f.indexOf(k));
  const by = new Map<string, { size: number; count: number }>();
  const nodes = snap.nodes as number[];
  for (let i = 0; i < nodes.length; i += f.length) {
    const type = types[nodes[i + ti!]!]!;
    const label = type === 'object' || type === 'closure' ? `${type} ${snap.strings[nodes[i + ni!]!]}` : type;
    const e = by.get(label) ?? { size: 0, count: 0 };
    e.size += nodes[i + si!]!;
    e.count++;
    by.set(label, e);
  }
  return by;
}

const rss = async () => Number((await readFile(`/proc/${child.pid}/status`, 'utf8')).match(/VmRSS:\s+(\d+)/)![1]) * 1024;
const empty = await snapshot();
const rss0 = await rss();
const sockets: WebSocket[] = [];
for (let i = 0; i < N; i += 200) {
  await Promise.all(
    Array.from({ length: Math.min(200, N - i) }, async (_, j) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/${args.target === 'relay' ? `?user=u${(i + j) % 1000}` : ''}`);
      sockets.push(ws);
      const token = await tokenFor(`u${(i + j) % 1000}`);
      await new Promise<void>((resolve, reject) => {
        ws.once('error', reject);
        ws.once('open', () => ws.send(JSON.stringify({ type: 'auth', token, batch: true })));
        if (args.target === 'relay') ws.once('open', () => resolve());
        ws.on('message', (d) => String(d).includes('"synced"') && resolve());
      });
    }),
  );
}
await sleep(2000);
const full = await snapshot();
const rss1 = await rss();
const rows = [...full].map(([k, v]) => {
  const e = empty.get(k) ?? { size: 0, count: 0 };
  return { k, bytes: (v.size - e.size) / N, count: (v.count - e.count) / N };
});
rows.sort((a, b) => b.bytes - a.bytes);
let total = 0;
for (const r of rows) total += r.bytes;
console.log(`${args.target}: ${N} sockets; heap ${total.toFixed(0)} B per socket, RSS ${((rss1 - rss0) / N).toFixed(0)} B per socket`);
for (const r of rows.slice(0, 40)) if (Math.abs(r.bytes) >= 4) console.log(`${r.bytes.toFixed(1).padStart(8)} B  ${r.count.toFixed(2).padStart(6)}×  ${r.k}`);
for (const ws of sockets) ws.terminate();
child.kill('SIGTERM');
await sleep(1000);
await query(admin, `DROP DATABASE ${name} WITH (FORCE)`);
process.exit(0);
