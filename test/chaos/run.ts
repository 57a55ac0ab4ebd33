/**
 * `npm run chaos`: pgbell's one promise under randomized faults. Writers commit inserts (one to
 * four rows per transaction), read-state updates and deletes for several users; tabs (some
 * batching, some filtered by type, some with tokens that expire mid-run) reconnect with their
 * own backoff to any node and resume from their cursors; a nemesis injects faults at random
 * moments, alone and overlapping:
 *   listener      the daemon's LISTEN or replication connection terminated (pg_terminate_backend)
 *   pool          the daemon's pooled connections terminated (a --workers primary's reader's too)
 *   sigkill       a daemon SIGKILLed, started again a moment later
 *   sigterm       a daemon stopped gracefully, started again
 *   worker-kill   one worker of the node run with `--workers 2` SIGKILLed (its primary starts another)
 *   pg-fast       Postgres restarted (fast shutdown)
 *   pg-immediate  Postgres restarted (immediate shutdown: crash recovery)
 *   db-freeze     the daemons' path to Postgres frozen for 1–4 s (a TCP proxy holds every byte)
 *   db-cut        every daemon connection to Postgres reset
 *   client-freeze the tabs' path to a daemon frozen for 1–3 s
 *   client-cut    every tab connection to a daemon reset
 *   slow          a tab stops reading for 2–5 s
 *   redis         (fan-out mode) Redis restarted
 *   relay         (fan-out mode) the relay node SIGKILLed
 * The workload is drawn too (test/chaos/workload.ts): pgbell's own "Alert" or an app's table
 * under `pgbell install` (mixed column types, odd json, TOASTed values, a nullable owner), writers
 * with table privileges only, row-level security, re-inserts, moves and ALTER TABLE mid-run;
 * with --standby, one stall of a synchronous standby (12–16 s: long runs only). Beside the
 * writers, the users work their bells (test/chaos/feed.ts): mark seen, archive, unarchive and
 * mute types, by HTTP through any node and by SQL.
 * At the end, with faults healed and writers stopped, every tab must hold exactly its user's
 * committed alerts that are not archived (of its types; without a filter, of no muted type) with
 * the database's read and seen states, and its counts (unread, unseen, byType) must equal a
 * SELECT; during the run none may have been sent another user's alert, another type, live a
 * muted type (without a filter), a new alert twice on one connection, or a reset; no writer
 * statement or feed request may fail but by a fault, no row without an owner reach a tab, and
 * each tab's data must equal the table's. The seed is printed: a failure replays with --seed.
 *
 *   npm run chaos -- [--seed N] [--seconds 60] [--modes notify,poll,wal] [--nodes 3]
 *                    [--fanout listen|redis] [--users 6] [--tabs 12] [--json out.json]
 *                    [--table alert|app] [--standby]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.js';
import { freePort, startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/cli/embedded.js';
import { databaseUrl, query } from '../helpers/pg.js';
import { FaultProxy } from './proxy.js';
import { ChaosTab } from './tab.js';
import { seeded } from '../helpers/random.js';
import { expectedFor, feedActor, newFeedCounts, readFeedTruth, type FeedCounts, type FeedTruth } from './feed.js';
import { alterTable, canonical, stallStandby, drawPlan, dropRoles, Gate, newCounts, prepare, readTruth as readTable, writer, type Counts, type Plan, type TableKind, type TruthRow } from './workload.js';

/** The processes whose parent is `pid` (a --workers primary's workers), from /proc. */
async function childPids(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = await readFile(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(d));
    } catch {
      // It ended meanwhile.
    }
  }
  return out;
}

const { values: args } = parseArgs({
  options: {
    seed: { type: 'string' },
    seconds: { type: 'string', default: '60' },
    modes: { type: 'string', default: 'notify,poll,wal' },
    nodes: { type: 'string', default: '3' },
    fanout: { type: 'string', default: 'listen' },
    users: { type: 'string', default: '6' },
    tabs: { type: 'string', default: '12' },
    json: { type: 'string' },
    table: { type: 'string' },
    standby: { type: 'boolean', default: false },
  },
});
const SEED = args.seed ? Number(args.seed) : Math.floor(Math.random() * 2 ** 31);
const SECONDS = Number(args.seconds);
const NODES = Number(args.nodes);
const FANOUT = args.fanout as 'listen' | 'redis';
const USERS = Array.from({ length: Number(args.users) }, (_, i) => `c${i}`);
const TABS = Number(args.tabs);
const SECRET = 'chaos-secret-chaos-secret-chaos-secret';
const FORCED_TABLE = args.table as TableKind | undefined;
if (FORCED_TABLE !== undefined && FORCED_TABLE !== 'alert' && FORCED_TABLE !== 'app') throw new Error('--table: alert or app');
const WRITERS = 3;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ModeReport {
  mode: string;
  nodes: number;
  fanout: string;
  seconds: number;
  faults: Record<string, number>;
  plan: Plan;
  committed: Counts;
  feed: FeedCounts;
  delivered: number;
  /** Violations by kind: lost (a change a tab never got), foreign (another user's, another type, a row without an owner, a muted type live), repeats, resets, stale (data that differs from the table), state (a seen state, an archived or muted alert listed, or counts — unread, unseen, byType — that differ from the database), writer (an app statement or feed request that failed). */
  figures: Record<'lost' | 'foreign' | 'repeats' | 'resets' | 'stale' | 'state' | 'writer' | 'other', number>;
  tabs: number;
  reloads: number;
  connections: number;
  tokenRefreshes: number;
  expiredCloses: number;
  worstCatchUpMs: number;
  p99CatchUpMs: number;
  violations: string[];
}

class Cluster {
  server!: EmbeddedPostgres;
  port = 0;
  constructor(readonly dir: string) {}
  async start(): Promise<void> {
    this.server = await startEmbeddedPostgres({ dataDir: path.join(this.dir, 'data'), password: 'chaos', port: this.port || undefined, settings: { fsync: 'off', max_connections: '300' } });
    this.port = this.server.port;
  }
  async restart(immediate: boolean): Promise<void> {
    if (immediate) {
      const pid = Number((await readFile(path.join(this.dir, 'data', 'postmaster.pid'), 'utf8')).split('\n')[0]);
      process.kill(pid, 'SIGQUIT');
      for (let i = 0; i < 200; i++) {
        try {
          process.kill(pid, 0);
        } catch {
          break;
        }
        await sleep(50);
      }
    } else await this.server.stop();
    await sleep(300);
    await this.start();
  }
}

async function runMode(mode: 'notify' | 'poll' | 'wal', cluster: Cluster, random: () => number): Promise<ModeReport> {
  const admin = () => databaseUrl(cluster.server.url, 'postgres');
  const name = `chaos_${mode}_${process.pid}`;
  await query(admin(), `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await query(admin(), `CREATE DATABASE ${name}`);
  const direct = () => databaseUrl(cluster.server.url, name);
  const plan = drawPlan(random, WRITERS, FORCED_TABLE);
  // --standby: one stall of a synchronous standby, 12–16 s (longer than the visibility wait of
  // WAL mode's first version gave up after); every other session commits locally meanwhile.
  const standby = args.standby ? { at: 0.2 + random() * 0.3, ms: 12_000 + random() * 4000 } : null;
  if (standby) await query(admin(), `ALTER DATABASE ${name} SET synchronous_commit = local`);
  const prepared = await prepare(plan, {
    url: direct(),
    mode,
    tag: `${mode}_${process.pid}`,
    migrate: async () => {
      await migrate(direct(), { channel: mode === 'notify' ? 'pgbell' : '', publish: mode === 'wal' });
      await query(direct(), `INSERT INTO "User" (id, email) SELECT u, u || '@example.test' FROM unnest($1::text[]) u`, [USERS]);
    },
  });
  console.log(`  table: ${plan.kind === 'app' ? `the app's public.inbox (pgbell install)${plan.rls ? ', under row-level security' : ''}` : 'pgbell\'s own "Alert" (pgbell migrate)'}; writers: ${plan.restricted.map((r) => (r ? 'table privileges only' : 'owner')).join(', ')}${plan.alters.length ? `; ALTER TABLE: ${plan.alters.map((a) => `${a.what} at ${(a.at * SECONDS).toFixed(1)} s`).join(', ')}` : ''}`);

  // The daemons reach Postgres through a proxy the nemesis can freeze and cut.
  const dbProxy = await FaultProxy.start(() => cluster.port);
  const viaProxy = () => {
    const u = new URL(direct());
    u.port = String(dbProxy.port);
    return u.toString();
  };
  const redis = FANOUT === 'redis' ? await RedisServer.start() : null;
  const faults: Record<string, number> = {};
  const count = (k: string) => (faults[k] = (faults[k] ?? 0) + 1);

  // The daemons, each behind a proxy the tabs connect through.
  const nodes: Array<{ port: number; proxy: FaultProxy; child: ChildProcess | null; log: string }> = [];
  for (let i = 0; i < NODES; i++) {
    const port = await freePort();
    nodes.push({ port, proxy: await FaultProxy.start(() => port), child: null, log: '' });
  }
  // The first node runs as a machine of two workers (`--workers 2`): one primary reading the
  // database for both, each worker holding its own sockets (src/daemon/workers.ts).
  const WORKERS_NODE = 0;
  const startNode = async (n: (typeof nodes)[number]) => {
    const env: Record<string, string> = {
      PATH: process.env.PATH!,
      DATABASE_URL: viaProxy(),
      SESSION_SECRET: SECRET,
      PGBELL_MODE: mode,
      PGBELL_POLL_MS: '50',
      PORT: String(n.port),
      HOST: '127.0.0.1',
      HEARTBEAT_MS: '2000',
      TOKEN_EXPIRING_SECONDS: '3',
      TOKEN_LEEWAY_SECONDS: '1',
      LOG_LEVEL: 'warn',
      LOG_FORMAT: 'json',
      MAX_CONNECTIONS_PER_USER: '100',
      ...(redis ? { PGBELL_FANOUT: 'redis', REDIS_URL: redis.url } : {}),
      ...(nodes.indexOf(n) === WORKERS_NODE ? { PGBELL_WORKERS: '2' } : {}),
    };
    const child = spawn(process.execPath, ['bin/pgbell.js', 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    n.child = child;
    const keep = (b: Buffer) => (n.log = (n.log + String(b)).slice(-20_000));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    for (let i = 0; i < 400 && n.child === child && running(child); i++) {
      if (await fetch(`http://127.0.0.1:${n.port}/health`).then((r) => r.ok, () => false)) return;
      await sleep(50);
    }
  };
  const stuck: string[] = [];
  // SIGTERM must end a daemon (it drains for at most 5 s): one that is still there after 20 s
  // is a failure of its own, and is then killed.
  const stopNode = async (n: (typeof nodes)[number], signal: NodeJS.Signals) => {
    const child = n.child;
    if (!child || !running(child)) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    const timer = setTimeout(() => {
      stuck.push(`node :${n.port} did not exit within 20 s of ${signal}; its last lines: ${n.log.split('\n').slice(-5).join(' | ')}`);
      child.kill('SIGKILL');
    }, 20_000);
    await exited;
    clearTimeout(timer);
  };
  // A start failing while Postgres restarts is retried: nodes stay up through the run.
  const ensureUp = async (n: (typeof nodes)[number]) => {
    for (let i = 0; i < 60 && (!n.child || !running(n.child)); i++) {
      await startNode(n);
      if (n.child && running(n.child)) return;
      await sleep(250);
    }
  };
  for (const n of nodes) await ensureUp(n);

  // Tabs: a mix of batching, type filters and short-lived tokens.
  const receivedAt = new Map<string, number[]>();
  const renewed = new Map<string, number>();
  const tabs = Array.from({ length: TABS }, (_, k) => new ChaosTab({
    id: k,
    userId: USERS[k % USERS.length]!,
    secret: SECRET,
    urls: () => nodes.map((n) => `ws://127.0.0.1:${n.proxy.port}/`),
    types: k % 4 === 1 ? ['billing'] : k % 4 === 3 ? ['info', 'security'] : null,
    batch: k % 3 === 0,
    ttlSeconds: k % 5 === 2 ? 6 + Math.floor(random() * 6) : 3600,
    refresh: k % 2 === 0,
    random,
    renewed,
    onReceived: (id, at) => {
      const list = receivedAt.get(id);
      if (list) list.push(at);
      else receivedAt.set(id, [at]);
    },
  }));
  console.log("  daemons up");
  for (const t of tabs) t.start();
  await waitFor(() => tabs.every((t) => t.synced), 30_000, 'every tab synced before the writers start');

  // Writers, straight to Postgres (the faults are on pgbell's paths); they retry while it is away.
  const committed = newCounts();
  const ackAt = new Map<string, number>();
  const writerFailures: string[] = [];
  const gate = new Gate();
  let writing = true;
  const writers = prepared.writerUrls.map((url, index) =>
    writer({ plan, index, url, users: USERS, random, counts: committed, renewed, failures: writerFailures, writing: () => writing, gate,
      onCommitted: (ids) => {
        const at = performance.now();
        for (const id of ids) ackAt.set(id, at);
      },
    }),
  );
  // The users in their bells (two at a time): seen, archive, unarchive, mute, by HTTP (any node) and SQL.
  const feed = newFeedCounts();
  const actors = [0, 1].map(() => feedActor({ url: direct(), users: USERS, secret: SECRET, bases: () => nodes.map((n) => `http://127.0.0.1:${n.proxy.port}`), random, counts: feed, failures: writerFailures, writing: () => writing }));


  // The nemesis.
  const kinds = ['listener', 'pool', 'sigkill', 'sigterm', 'worker-kill', 'pg-fast', 'pg-immediate', 'db-freeze', 'db-cut', 'client-freeze', 'client-cut', 'slow', ...(redis ? ['redis', 'relay'] : [])];
  const healing: Array<Promise<unknown>> = [];
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const deadline = Date.now() + SECONDS * 1000;
  let pgBusy = false;
  const alters = [...plan.alters];
  let stall = standby;
  const stalledIds = new Set<string>();
  while (Date.now() < deadline) {
    await sleep(400 + random() * 2600);
    // The app's ALTER TABLE steps, when their time has come (between the writers' transactions).
    while (alters.length > 0 && Date.now() >= deadline - SECONDS * 1000 * (1 - alters[0]!.at)) {
      const { what } = alters.shift()!;
      const step = ++committed.alters;
      console.log(`  ${((SECONDS * 1000 - (deadline - Date.now())) / 1000).toFixed(1).padStart(5)} s  ALTER TABLE (${what})`);
      healing.push(gate.exclusive(() => alterTable(direct(), what, step, writerFailures)));
    }
    if (stall && Date.now() >= deadline - SECONDS * 1000 * (1 - stall.at)) {
      const { ms } = stall;
      stall = null;
      console.log(`  ${((SECONDS * 1000 - (deadline - Date.now())) / 1000).toFixed(1).padStart(5)} s  standby stall (${(ms / 1000).toFixed(1)} s)`);
      count('standby');
      healing.push(stallStandby(admin(), direct(), plan.kind, ms, writerFailures).then((id) => id !== null && stalledIds.add(id)));
    }
    const kind = pick(kinds);
    count(kind);
    const node = pick(nodes);
    const t = ((SECONDS * 1000 - (deadline - Date.now())) / 1000).toFixed(1);
    console.log(`  ${t.padStart(5)} s  ${kind}${['sigkill', 'sigterm', 'client-freeze', 'client-cut'].includes(kind) ? ` (node :${node.port})` : ''}`);
    switch (kind) {
      case 'listener':
        await query(direct(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgbell-listener' AND datname = current_database()`).catch(() => {});
        break;
      case 'pool':
        await query(direct(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name IN ('pgbell', 'pgbell-reader') AND datname = current_database() AND pid <> pg_backend_pid()`).catch(() => {});
        break;
      case 'worker-kill': {
        // One worker of the machine: its sockets go, its primary starts another in its place.
        const primary = nodes[WORKERS_NODE]!.child;
        const workers = primary && running(primary) ? await childPids(primary.pid!) : [];
        const victim = workers.length > 0 ? pick(workers) : null;
        if (victim !== null) {
          try {
            process.kill(victim, 'SIGKILL');
          } catch {
            // Gone already.
          }
        }
        break;
      }
      case 'sigkill':
      case 'sigterm':
        healing.push(stopNode(node, kind === 'sigkill' ? 'SIGKILL' : 'SIGTERM').then(() => sleep(random() * 1500)).then(() => ensureUp(node)));
        break;
      case 'pg-fast':
      case 'pg-immediate':
        // One restart at a time; they may still overlap every other fault.
        if (pgBusy) break;
        pgBusy = true;
        healing.push(cluster.restart(kind === 'pg-immediate').finally(() => (pgBusy = false)));
        break;
      case 'db-freeze':
        dbProxy.freeze();
        healing.push(sleep(1000 + random() * 3000).then(() => dbProxy.thaw()));
        break;
      case 'db-cut':
        dbProxy.cut();
        break;
      case 'client-freeze':
        node.proxy.freeze();
        healing.push(sleep(1000 + random() * 2000).then(() => node.proxy.thaw()));
        break;
      case 'client-cut':
        node.proxy.cut();
        break;
      case 'slow':
        pick(tabs).pause(2000 + random() * 3000);
        break;
      case 'redis':
        healing.push(redis!.restart());
        break;
      case 'relay': {
        const healths = await Promise.all(nodes.map((n) => fetch(`http://127.0.0.1:${n.port}/health`).then((r) => r.json() as Promise<any>, () => null)));
        const relay = nodes[healths.findIndex((h) => h?.listener?.relay)];
        if (relay) healing.push(stopNode(relay, 'SIGKILL').then(() => sleep(random() * 1500)).then(() => ensureUp(relay)));
        break;
      }
    }
  }

  // Heal: every fault over, every node up; then stop writing and let the tabs converge.
  console.log('  healing');
  await Promise.all(healing);
  dbProxy.thaw();
  for (const n of nodes) n.proxy.thaw();
  for (const n of nodes) await ensureUp(n);
  await sleep(2000);
  writing = false;
  await Promise.all([...writers, ...actors]);

  console.log('  converging');
  const violations: string[] = [];
  const truth = await readTruth(direct(), plan.kind, stalledIds);
  const muted = [...truth.feed.muted].filter(([, m]) => m.length > 0).map(([u, m]) => `${u}: ${m.join(',')}`);
  console.log(`  ${[...truth.feed.rows.values()].filter((r) => r.archived).length} archived, ${[...truth.feed.rows.values()].filter((r) => r.seen && !r.read).length} seen and not read; muted: ${muted.join('; ') || 'none'}`);
  console.log(`  the database holds ${[...truth.alerts.values()].reduce((n, m) => n + m.size, 0)} alerts with an owner`);
  const converged = () => tabs.every((t) => mismatch(t, truth).length === 0);
  try {
    await waitFor(converged, 60_000, 'every tab to match the database');
  } catch {
    for (const t of tabs) for (const m of mismatch(t, truth)) violations.push(m);
  }
  for (const t of tabs) t.stop();
  for (const t of tabs) violations.push(...t.violations);
  violations.push(...writerFailures);
  violations.push(...stuck);
  console.log('  stopping');
  for (const n of nodes) await stopNode(n, 'SIGTERM');
  violations.push(...stuck.filter((x) => !violations.includes(x)));
  if (violations.length > 0) for (const n of nodes) if (n.log) console.error(`--- node :${n.port} log (last lines)\n${n.log.split('\n').slice(-15).join('\n')}`);
  for (const n of nodes) await n.proxy.close();
  await dbProxy.close();
  await redis?.stop();
  await dropRoles(direct(), prepared.roles);

  const catchUp: number[] = [];
  for (const [id, times] of receivedAt) {
    const ack = ackAt.get(id);
    if (ack !== undefined) for (const t of times) catchUp.push(Math.max(0, t - ack));
  }
  catchUp.sort((a, b) => a - b);
  return {
    mode,
    nodes: NODES,
    fanout: FANOUT,
    seconds: SECONDS,
    faults,
    plan,
    committed,
    feed,
    figures: classify(violations),
    delivered: catchUp.length,
    tabs: TABS,
    reloads: tabs.reduce((n, t) => n + t.reloads, 0),
    connections: tabs.reduce((n, t) => n + t.connections, 0),
    tokenRefreshes: tabs.reduce((n, t) => n + t.refreshed, 0),
    expiredCloses: tabs.reduce((n, t) => n + t.expiredCloses, 0),
    worstCatchUpMs: catchUp.at(-1) ?? 0,
    p99CatchUpMs: catchUp[Math.floor(catchUp.length * 0.99)] ?? 0,
    violations,
  };
}

interface Truth {
  /** user → alert id → the row as pgbell must have delivered it */
  alerts: Map<string, Map<string, TruthRow>>;
  /** The alert the stalled standby's update marked (--standby). */
  stalled: Set<string>;
  /** Seen, archived and muted, from pgbell's "Alert" view and pgbell.preference. */
  feed: FeedTruth;
}

async function readTruth(url: string, kind: TableKind, stalled: Set<string>): Promise<Truth> {
  const alerts = new Map<string, Map<string, TruthRow>>(USERS.map((u) => [u, new Map()]));
  for (const [id, r] of await readTable(url, kind)) alerts.get(r.userId)?.set(id, r);
  return { alerts, stalled, feed: await readFeedTruth(url) };
}

const KINDS: Array<[keyof ModeReport['figures'], RegExp]> = [
  // First: its messages hold "unread 3".
  ['state', /seen=|which is archived|, muted\)|: counts /],
  ['lost', /never got alert|read=|which is deleted|unread \d/],
  ['foreign', /got alert \S+ of |of type|without an owner/],
  ['repeats', /sent twice/],
  ['resets', /: reset \(/],
  ['stale', /data differs/],
  ['writer', /^writer |^ALTER TABLE/],
];

function classify(violations: string[]): ModeReport['figures'] {
  const out: ModeReport['figures'] = { lost: 0, foreign: 0, repeats: 0, resets: 0, stale: 0, state: 0, writer: 0, other: 0 };
  for (const v of violations) out[KINDS.find(([, re]) => re.test(v))?.[0] ?? 'other']++;
  return out;
}

/** How a tab differs from the database: missing, extra or stale alerts, a wrong seen state, or wrong counts. */
function mismatch(t: ChaosTab, truth: Truth): string[] {
  const out: string[] = [];
  const who = `tab ${t.o.id} of ${t.o.userId}`;
  const why = (id: string) => (truth.stalled.has(id) ? ' (marked by the stalled update)' : t.o.renewed?.has(id) ? ' (re-inserted or moved)' : '');
  const table = truth.alerts.get(t.o.userId)!;
  const expected = expectedFor(truth.feed, t.o.userId, t.o.types);
  for (const id of expected.list) {
    const a = table.get(id);
    const f = truth.feed.rows.get(id)!;
    const held = t.alerts.get(id);
    if (!a) out.push(`${who}: alert ${id} is in pgbell's "Alert" view but not in the table`);
    else if (!held) out.push(`${who}: never got alert ${id}${why(id)}`);
    else if (held.read !== a.read) out.push(`${who}: alert ${id} read=${held.read}, database says ${a.read}${why(id)}`);
    else if (held.seen !== f.seen) out.push(`${who}: alert ${id} seen=${held.seen}, database says ${f.seen}${why(id)}`);
    else if (canonical(t.data.get(id)) !== canonical(a.data)) {
      out.push(`${who}: alert ${id} data differs: got ${short(canonical(t.data.get(id)))}, the table has ${short(canonical(a.data))}`);
    }
  }
  for (const [id, held] of t.alerts) {
    if (expected.list.has(id)) continue;
    const f = truth.feed.rows.get(id);
    if (f?.userId === t.o.userId && f.archived) out.push(`${who}: holds alert ${id}, which is archived${why(id)}`);
    else if (f?.userId === t.o.userId && !t.o.types) out.push(`${who}: holds alert ${id} (type ${f.type}, muted)${why(id)}`);
    else out.push(`${who}: holds alert ${id}, which is deleted (or not its own, type ${held.type})${why(id)}`);
  }
  const counts = { unread: t.unread, unseen: t.unseen, byType: t.byType };
  if (out.length === 0 && canonical(counts) !== canonical(expected.counts)) out.push(`${who}: counts ${countsLine(counts)}, database says ${countsLine(expected.counts)}`);
  return out;
}

function countsLine(c: { unread: number; unseen: number; byType: Record<string, { unread: number; unseen: number }> }): string {
  return `unread ${c.unread} unseen ${c.unseen} byType ${Object.keys(c.byType).sort().map((k) => `${k} ${c.byType[k]!.unread}/${c.byType[k]!.unseen}`).join(', ') || '-'}`;
}

/** Violations grouped by their shape (numbers left out), most frequent first: "count × the first of them". */
function shapes(violations: string[]): string[] {
  const groups = new Map<string, { n: number; first: string }>();
  for (const v of violations) {
    const key = v.replace(/\d+/g, 'N').slice(0, 160);
    const g = groups.get(key);
    if (g) g.n++;
    else groups.set(key, { n: 1, first: v });
  }
  return [...groups.values()].sort((a, b) => b.n - a.n).map((g) => `${g.n} × ${g.first}`);
}

/** Long values (the TOASTed blobs) cut to their start. */
function short(s: string): string {
  return s.replace(/"[0-9a-f]{64,}"/g, (x) => `"${x.slice(1, 9)}…(${x.length - 2})"`).slice(0, 400);
}

/** A redis-server of this run's own, so restarting it disturbs nothing else. */
class RedisServer {
  child: ChildProcess | null = null;
  private constructor(readonly port: number) {}
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }
  static async start(): Promise<RedisServer> {
    const r = new RedisServer(await freePort());
    await r.#spawn();
    return r;
  }
  async #spawn(): Promise<void> {
    this.child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    await sleep(300);
  }
  async restart(): Promise<void> {
    await this.stop();
    await sleep(200 + Math.random() * 800);
    await this.#spawn();
  }
  async stop(): Promise<void> {
    const c = this.child;
    if (!c || !running(c)) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  }
}

/** A child killed by a signal has a null exitCode (and a signalCode). */
function running(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function main(): Promise<void> {
  console.log(`chaos: seed ${SEED} (replay with --seed ${SEED}), ${SECONDS} s per mode, modes ${args.modes}, ${NODES} node(s), fan-out ${FANOUT}, ${USERS.length} users, ${TABS} tabs`);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-chaos-'));
  await chmod(dir, 0o755);
  const cluster = new Cluster(dir);
  await cluster.start();
  console.log(`postgres on ${cluster.port}`);
  const reports: ModeReport[] = [];
  try {
    for (const mode of args.modes.split(',') as Array<'notify' | 'poll' | 'wal'>) {
      const random = seeded(SEED + mode.length);
      const r = await runMode(mode, cluster, random);
      reports.push(r);
      const faults = Object.entries(r.faults).map(([k, n]) => `${k} ${n}`).join(', ');
      const c = r.committed;
      console.log(`\n${mode} mode: ${c.transactions} transactions (${c.inserts} inserts of which ${c.nullOwner} without an owner and ${c.big} big, ${c.updates} updates, ${c.deletes} deletes, ${c.reinserts} re-inserts, ${c.moves} moves, ${c.alters} ALTER TABLE); ${r.delivered} alert deliveries to ${r.tabs} tabs over ${r.connections} connections`);
      const fd = r.feed;
      console.log(`  feed: ${fd.seen} seen, ${fd.archives} archive and ${fd.unarchives} unarchive requests, ${fd.mutes} mutes; ${fd.changed} alerts changed, ${fd.pending} pending, ${fd.refused} refused (unknown_alert), ${fd.faulted} cut by a fault; ${r.reloads} list reloads after an unmute`);
      console.log(`  faults: ${faults}; token refreshes ${r.tokenRefreshes}, 4401 closes ${r.expiredCloses}`);
      console.log(`  commit → tab: p99 ${r.p99CatchUpMs.toFixed(0)} ms, worst ${r.worstCatchUpMs.toFixed(0)} ms (the worst catch-up)`);
      const f = Object.entries(r.figures).map(([k, n]) => `${k} ${n}`).join(', ');
      console.log(r.violations.length === 0 ? `  ${f}: the guarantee held` : `  ${f}: ${r.violations.length} VIOLATIONS, by shape (count × first):\n    ${shapes(r.violations).slice(0, 30).join('\n    ')}`);
    }
  } finally {
    await cluster.server.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
  if (args.json) await writeFile(args.json, JSON.stringify({ seed: SEED, reports }, null, 2) + '\n');
  const bad = reports.reduce((n, r) => n + r.violations.length, 0);
  console.log(`\nchaos seed ${SEED}: ${bad === 0 ? 'passed' : `FAILED (${bad} violations)`}`);
  process.exit(bad === 0 ? 0 : 1);
}

await main();
