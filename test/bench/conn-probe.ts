/**
 * Where connecting time goes, from one client process: N sockets, C at a time, against a
 * running daemon (or floor B with `relay`): mean time to open, from the auth message to
 * `ready`, and from `ready` to `synced`. Pair it with strace -c or --cpu-prof on the server.
 *
 *   npx tsx test/bench/conn-probe.ts ws://127.0.0.1:8080/ [N=5000] [C=100] [relay]
 *   (the daemon's SESSION_SECRET must be the tests' one: test/helpers/daemon.ts)
 */
import WebSocket from 'ws';
import { tokenFor } from '../helpers/daemon.js';
const url = process.argv[2]!;
const N = Number(process.argv[3] ?? 5000);
const C = Number(process.argv[4] ?? 100);
const toks = new Map<string, string>();
for (let u = 0; u < 1000; u++) toks.set(`u${u}`, await tokenFor(`u${u}`));
const sum = { open: 0, ready: 0, synced: 0 };
let next = 0;
const t0 = performance.now();
const socks: WebSocket[] = [];
async function one(i: number) {
  const a = performance.now();
  const relay = process.argv[5] === 'relay';
  const ws = new WebSocket(relay ? `${url}?user=u${i % 1000}` : url, { perMessageDeflate: false });
  socks.push(ws);
  await new Promise<void>((res, rej) => { ws.once('open', () => res()); ws.once('error', rej); });
  const b = performance.now();
  if (relay) { sum.open += b - a; return; }
  ws.send(JSON.stringify({ type: 'auth', token: toks.get(`u${i % 1000}`), batch: true }));
  let c = 0;
  await new Promise<void>((res, rej) => ws.on('message', (d) => { const m = JSON.parse(String(d)); if (m.type === 'ready') c = performance.now(); if (m.type === 'synced') res(); if (m.type === 'error') rej(new Error(m.code)); }));
  const e = performance.now();
  sum.open += b - a; sum.ready += c - b; sum.synced += e - c;
}
await Promise.all(Array.from({ length: C }, async () => { while (next < N) await one(next++); }));
const ms = performance.now() - t0;
console.log(`${N} sockets, concurrency ${C}: ${ms.toFixed(0)} ms; mean open ${(sum.open / N).toFixed(2)} auth→ready ${(sum.ready / N).toFixed(2)} ready→synced ${(sum.synced / N).toFixed(2)} ms`);
for (const s of socks) s.terminate();
process.exit(0);
