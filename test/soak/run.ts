/**
 * `npm run soak`: one daemon under a steady load for a long time. Writers commit alerts at a
 * fixed rate (with some read-state updates and deletes) for many users; thousands of tabs stay
 * connected, a share of them dropping and resuming every minute; the listener and the pool are
 * cut now and then. Every few seconds it samples the daemon (RSS, V8 heap, open handles, open
 * files) and Postgres (NOTIFY queue usage, replication slot lag, tombstones).
 *
 * It fails when, after warm-up, a daemon figure grows by more than --max-growth (10%) over the
 * run, judged on the trend (a least-squares line through every sample, heap through each
 * window's minimum, i.e. after collection), not on one sample (RSS and heap only in runs of 10
 * minutes or more); when Postgres's queue or slot lag
 * is not bounded; or when any tab does not end holding exactly its user's alerts.
 *
 *   npm run soak -- [--seconds 1200] [--rate 200] [--sockets 2000] [--users 400]
 *                   [--mode notify|poll|wal] [--reconnect 5] [--fault-every 120] [--json out.json]
 */
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.js';
import { freePort, startEmbeddedPostgres } from '../../src/cli/embedded.js';
import { databaseUrl, query } from '../helpers/pg.js';
import { ChaosTab } from '../chaos/tab.js';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '1200' },
    rate: { type: 'string', default: '200' },
    sockets: { type: 'string', default: '2000' },
    users: { type: 'string', default: '400' },
    mode: { type: 'string', default: 'notify' },
    reconnect: { type: 'string', default: '5' },
    'fault-every': { type: 'string', default: '120' },
    'max-growth': { type: 'string', default: '10' },
    json: { type: 'string' },
  },
});
const SECONDS = Number(args.seconds);
const RATE = Number(args.rate);
const SOCKETS = Number(args.sockets);
const USERS = Array.from({ length: Number(args.users) }, (_, i) => `s${i}`);
const MODE = args.mode as 'notify' | 'poll' | 'wal';
const RECONNECT_PCT = Number(args.reconnect);
const FAULT_EVERY = Number(args['fault-every']);
const MAX_GROWTH = Number(args['max-growth']) / 100;
const SECRET = 'soak-secret-soak-secret-soak-secret!';
const SAMPLE_MS = 2000;
/** Runs at least this long assert RSS and heap trends too (see below). */
const MEMORY_CHECK_SECONDS = 600;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sample {
  t: number;
  rss: number;
  heap: number;
  handles: number;
  fds: number;
  queue: number;
  slotLag: number;
  tombstones: number;
}

/** Growth over the window the least-squares line through (t, v) implies, relative to its mean. */
function trendGrowth(points: Array<[number, number]>): number {
  const n = points.length;
  if (n < 3) return 0;
  const mt = points.reduce((s, [t]) => s + t, 0) / n;
  const mv = points.reduce((s, [, v]) => s + v, 0) / n;
  let num = 0;
  let den = 0;
  for (const [t, v] of points) {
    num += (t - mt) * (v - mv);
    den += (t - mt) ** 2;
  }
  const slope = den === 0 ? 0 : num / den;
  const span = points[n - 1]![0] - points[0]![0];
  return mv === 0 ? 0 : (slope * span) / mv;
}

/** Each window's smallest value: a heap's level after collection, without the sawtooth. */
function windowMinimums(points: Array<[number, number]>, windowMs: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [t, v] of points) {
    const w = Math.floor(t / windowMs);
    const last = out[out.length - 1];
    if (last && Math.floor(last[0] / windowMs) === w) last[1] = Math.min(last[1], v);
    else out.push([t, v]);
  }
  return out;
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

async function main(): Promise<void> {
  console.log(`soak: ${SECONDS} s, ${RATE} alerts/s, ${SOCKETS} sockets of ${USERS.length} users, ${MODE} mode, ${RECONNECT_PCT}% reconnecting each minute, a fault every ${FAULT_EVERY} s`);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-soak-'));
  await chmod(dir, 0o755);
  const server = await startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), password: 'soak', settings: { fsync: 'off', max_connections: '200' } });
  const failures: string[] = [];
  let daemon: ReturnType<typeof spawn> | null = null;
  const tabs: ChaosTab[] = [];
  try {
    const db = databaseUrl(server.url, 'postgres');
    await query(db, 'CREATE DATABASE soak');
    const url = databaseUrl(server.url, 'soak');
    await migrate(url, { channel: MODE === 'notify' ? 'pgbell' : '', publish: MODE === 'wal' });
    await query(url, `INSERT INTO "User" (id, email) SELECT u, u || '@example.test' FROM unnest($1::text[]) u`, [USERS]);

    const port = await freePort();
    let log = '';
    daemon = spawn(process.execPath, ['bin/pgbell.js', 'start'], {
      env: { PATH: process.env.PATH!, DATABASE_URL: url, SESSION_SECRET: SECRET, PGBELL_MODE: MODE, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', LOG_FORMAT: 'json', MAX_CONNECTIONS_PER_USER: '1000', HEARTBEAT_MS: '10000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (b: Buffer) => (log = (log + String(b)).slice(-20_000));
    daemon.stdout!.on('data', keep);
    daemon.stderr!.on('data', keep);
    for (let i = 0; !(await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false)); i++) {
      if (i > 400 || daemon.exitCode !== null) throw new Error(`the daemon did not start: ${log.slice(-2000)}`);
      await sleep(50);
    }
    const pid = daemon.pid!;

    let seed = 12345;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    // Opened 250 at a time: all at once is a storm the unauthenticated cap answers with
    // server_full (tested elsewhere), not a steady state.
    const t0 = Date.now();
    for (let k = 0; k < SOCKETS; k++) {
      const tab = new ChaosTab({ id: k, userId: USERS[k % USERS.length]!, secret: SECRET, urls: () => [`ws://127.0.0.1:${port}/`], types: null, batch: k % 2 === 0, ttlSeconds: 4 * 3600, refresh: true, random, onReceived: () => {} });
      tabs.push(tab);
      tab.start();
      if (tabs.length % 250 === 0 || k === SOCKETS - 1) {
        while (tabs.some((t) => !t.synced)) {
          if (Date.now() - t0 > 120_000) throw new Error(`${tabs.filter((t) => !t.synced).length} tabs never synced`);
          await sleep(100);
        }
      }
    }
    console.log(`${SOCKETS} tabs synced in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    // The load: RATE inserts a second in 10 ticks, one transaction each; every tick also marks
    // one alert read, and one in ten deletes one.
    const pool = new pg.Pool({ connectionString: url, max: 6 });
    pool.on('error', () => {});
    let inserted = 0;
    let deleted = 0;
    let writeErrors = 0;
    let stop = false;
    const writer = (async () => {
      for (let tick = 0; !stop; tick++) {
        const started = Date.now();
        const n = Math.round(RATE / 10);
        const jobs: Array<Promise<unknown>> = [];
        for (let i = 0; i < n; i++) {
          const user = USERS[Math.floor(random() * USERS.length)]!;
          jobs.push(pool.query(`INSERT INTO "Alert" ("userId", title) VALUES ($1, $2)`, [user, `soak ${tick}.${i}`]).then(() => inserted++));
        }
        jobs.push(pool.query(`UPDATE "Alert" SET read = true WHERE id = (SELECT id FROM "Alert" WHERE NOT read ORDER BY random() LIMIT 1)`));
        if (tick % 10 === 0) jobs.push(pool.query(`DELETE FROM "Alert" WHERE id = (SELECT id FROM "Alert" ORDER BY random() LIMIT 1)`).then((r) => (deleted += r.rowCount ?? 0)));
        for (const r of await Promise.allSettled(jobs)) if (r.status === 'rejected') writeErrors++;
        await sleep(Math.max(0, 100 - (Date.now() - started)));
      }
    })();

    const samples: Sample[] = [];
    const faults: Record<string, number> = {};
    let reconnects = 0;
    const start = Date.now();
    let nextMinute = start + 60_000;
    let nextFault = start + FAULT_EVERY * 1000;
    while (Date.now() - start < SECONDS * 1000) {
      await sleep(SAMPLE_MS);
      const now = Date.now();
      if (now >= nextMinute) {
        nextMinute += 60_000;
        for (const tab of tabs) if (random() * 100 < RECONNECT_PCT) (tab.drop(), reconnects++);
      }
      if (now >= nextFault) {
        nextFault += FAULT_EVERY * 1000;
        const kind = (faults.listener ?? 0) <= (faults.pool ?? 0) ? 'listener' : 'pool';
        faults[kind] = (faults[kind] ?? 0) + 1;
        const who = kind === 'listener' ? `application_name = 'pgbell-listener'` : `application_name = 'pgbell'`;
        await query(url, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE ${who} AND datname = current_database() AND pid <> pg_backend_pid()`).catch(() => {});
      }
      const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
      const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) * 1024;
      const fds = (await readdir(`/proc/${pid}/fd`).catch(() => [])).length;
      const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => '');
      const [pgRow] = await query<{ q: number; lag: string; tomb: string }>(url, `SELECT pg_notification_queue_usage() AS q,
          coalesce((SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)) FROM pg_replication_slots), 0)::text AS lag,
          (SELECT count(*) FROM pgbell."AlertTombstone")::text AS tomb`).catch(() => [undefined]);
      samples.push({ t: now - start, rss, heap: metric(text, 'pgbell_nodejs_heap_size_used_bytes'), handles: metric(text, 'pgbell_nodejs_active_handles_total'), fds, queue: pgRow?.q ?? NaN, slotLag: Number(pgRow?.lag ?? NaN), tombstones: Number(pgRow?.tomb ?? NaN) });
      if (samples.length % Math.max(1, Math.round(30_000 / SAMPLE_MS)) === 0) {
        const s = samples[samples.length - 1]!;
        console.log(`  ${(s.t / 1000).toFixed(0)} s: rss ${(s.rss / 2 ** 20).toFixed(1)} MiB, heap ${(s.heap / 2 ** 20).toFixed(1)} MiB, handles ${s.handles}, fds ${s.fds}, queue ${(s.queue * 100).toFixed(3)}%, slot lag ${(s.slotLag / 1024).toFixed(0)} KiB, tombstones ${s.tombstones}; ${inserted} inserted`);
      }
      if (daemon.exitCode !== null || daemon.signalCode !== null) throw new Error(`the daemon exited: ${log.slice(-2000)}`);
    }
    stop = true;
    await writer;
    await pool.end();

    // Every tab must end holding exactly its user's alerts and read state.
    const settle = Date.now();
    let last: string[] = [];
    for (;;) {
      const rows = await query<{ id: string; userId: string; read: boolean }>(url, `SELECT id, "userId", read FROM "Alert"`);
      const truth = new Map<string, Map<string, boolean>>(USERS.map((u) => [u, new Map()]));
      for (const r of rows) truth.get(r.userId)!.set(r.id, r.read);
      last = [];
      for (const tab of tabs) {
        const want = truth.get(tab.o.userId)!;
        let missing = 0;
        let stale = 0;
        for (const [id, read] of want) {
          if (!tab.alerts.has(id)) missing++;
          else if (tab.alerts.get(id)!.read !== read) stale++;
        }
        const extra = [...tab.alerts.keys()].filter((id) => !want.has(id)).length;
        if (missing + stale + extra > 0) last.push(`tab ${tab.o.id} of ${tab.o.userId}: ${missing} missing, ${stale} with another read state, ${extra} not in the database`);
      }
      if (last.length === 0 || Date.now() - settle > 60_000) break;
      await sleep(500);
    }
    failures.push(...last.slice(0, 20), ...tabs.flatMap((t) => t.violations).slice(0, 20));

    // Trends after warm-up (the first quarter, at least 20 s).
    const warm = Math.max(20_000, (SECONDS * 1000) / 4);
    const after = samples.filter((s) => s.t >= warm);
    const series = (k: keyof Sample) => after.map((s) => [s.t, s[k]] as [number, number]).filter(([, v]) => Number.isFinite(v));
    const growth = {
      rss: trendGrowth(series('rss')),
      heap: trendGrowth(windowMinimums(series('heap'), 20_000)),
      handles: trendGrowth(series('handles')),
      fds: trendGrowth(series('fds')),
    };
    // V8's old generation climbs for minutes before its first full collection under this load
    // (seen: heap 54 → 83 MiB over 90 s, then 46–52 MiB for good): a shorter run ends inside one
    // cycle, so its memory trend is reported, and asserted from MEMORY_CHECK_SECONDS on.
    const checked = SECONDS >= MEMORY_CHECK_SECONDS ? Object.keys(growth) : ['handles', 'fds'];
    for (const [k, g] of Object.entries(growth)) if (checked.includes(k) && g > MAX_GROWTH) failures.push(`daemon ${k} grew ${(g * 100).toFixed(1)}% over the run after warm-up (limit ${(MAX_GROWTH * 100).toFixed(0)}%)`);
    const maxQueue = Math.max(...samples.map((s) => s.queue).filter(Number.isFinite));
    const maxLag = Math.max(...samples.map((s) => s.slotLag).filter(Number.isFinite));
    const maxTomb = Math.max(...samples.map((s) => s.tombstones).filter(Number.isFinite));
    if (maxQueue > 0.01) failures.push(`the NOTIFY queue reached ${(maxQueue * 100).toFixed(2)}% (limit 1%)`);
    if (maxLag > 256 * 2 ** 20) failures.push(`a replication slot lagged ${(maxLag / 2 ** 20).toFixed(0)} MiB (limit 256 MiB)`);
    if (maxTomb > deleted) failures.push(`${maxTomb} tombstones for ${deleted} deletes`);
    const first = after[0];
    const end = after[after.length - 1];
    const report = {
      seconds: SECONDS,
      mode: MODE,
      rate: RATE,
      sockets: SOCKETS,
      inserted,
      deleted,
      writeErrors,
      reconnects,
      faults,
      growthPct: Object.fromEntries(Object.entries(growth).map(([k, g]) => [k, Number((g * 100).toFixed(2))])),
      afterWarmUp: first && end ? { rssMiB: [first.rss / 2 ** 20, end.rss / 2 ** 20].map((v) => Number(v.toFixed(1))), heapMiB: [first.heap / 2 ** 20, end.heap / 2 ** 20].map((v) => Number(v.toFixed(1))), handles: [first.handles, end.handles], fds: [first.fds, end.fds] } : null,
      maxQueuePct: Number((maxQueue * 100).toFixed(4)),
      maxSlotLagKiB: Math.round(maxLag / 1024),
      maxTombstones: maxTomb,
      failures,
    };
    console.log(`\n${inserted} alerts inserted, ${deleted} deleted (${writeErrors} writes failed during faults); ${reconnects} tab reconnects; faults: ${Object.entries(faults).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`);
    console.log(`after warm-up: RSS ${report.afterWarmUp?.rssMiB.join(' → ')} MiB, heap ${report.afterWarmUp?.heapMiB.join(' → ')} MiB, handles ${report.afterWarmUp?.handles.join(' → ')}, fds ${report.afterWarmUp?.fds.join(' → ')}`);
    console.log(`trend growth: ${Object.entries(report.growthPct).map(([k, g]) => `${k} ${g}%`).join(', ')} (limit ${(MAX_GROWTH * 100).toFixed(0)}%, asserted for ${checked.join(', ')})`);
    console.log(`Postgres: NOTIFY queue at most ${report.maxQueuePct}%, slot lag at most ${report.maxSlotLagKiB} KiB, tombstones at most ${maxTomb}`);
    if (args.json) await writeFile(args.json, JSON.stringify(report, null, 2) + '\n');
  } finally {
    for (const t of tabs) t.stop();
    if (daemon && daemon.exitCode === null) {
      const exited = new Promise((r) => daemon!.once('exit', r));
      daemon.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
    }
    await server.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
  console.log(failures.length === 0 ? '\nsoak: passed' : `\nsoak: FAILED\n  ${failures.join('\n  ')}`);
  process.exit(failures.length === 0 ? 0 : 1);
}

await main();
