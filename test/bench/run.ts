/**
 * `npm run bench`: pgbell beside its floors and its peers, same machine, same run, so the
 * ratios hold on a noisy host.
 *
 *   targets   pgbell      `pgbell start`, its own process, clients authenticate and ask for batches
 *             pgbell-poll the same in poll mode (PGBELL_MODE=poll, --poll-ms), triggers without NOTIFY
 *             pgbell-wal  the same in WAL mode (PGBELL_MODE=wal): logical replication, no NOTIFY
 *             pgbell-debug pgbell at LOG_LEVEL=debug: one log line per alert and user and per socket
 *                         (the cost of those lines, against pgbell at its default level)
 *             pgbell-warn pgbell at LOG_LEVEL=warn (not in the default set): the floor for the
 *                         cost of logging at the default level
 *             listen      floor A: a raw LISTEN client's receipt of the trigger's NOTIFY (no daemon)
 *             relay       floor B: pg-listen → ws, no auth, no features (test/bench/peers/relay.ts)
 *             relay-read  floor R: floor B that, like pgbell, reads each notified transaction's rows
 *                         in one indexed query instead of trusting the payload (peers/relay-read.ts)
 *             relay-wal   floor W: a bare pgoutput consumer → ws, no triggers (peers/relay-wal.ts)
 *             socketio    peer C: Socket.IO rooms fed by pg-listen (peers/socketio.ts)
 *             broadcast   peer D: the writer POSTs each alert to an HTTP broadcast endpoint (peers/broadcast.ts)
 *   scenarios latency      S sockets over U users, R single-row INSERTs/s from a pool of writers;
 *                          commit→socket percentiles (writer stamps send and ack, clients stamp receipt,
 *                          one monotonic clock); the writers' own commit latency; sockets connect+auth
 *                          time and RSS per idle socket; what the target costs the database (its
 *                          backends' statements from pg_stat_statements, their CPU from /proc)
 *             throughput  (a) transactions of 100 rows, one alert per socket; (b) bursts: 1,000-row
 *                          transactions to 100 sockets; (c) one statement, one alert for each of S users
 *             writers     INSERT throughput with the triggers off, on (NOTIFY), in poll mode, and in WAL
 *                          mode with pgbell-wal streaming meanwhile
 *
 *   npm run bench -- [--scenarios latency,throughput,writers] [--targets pgbell,listen,relay,socketio,broadcast]
 *                    [--sockets 10000] [--users 1000] [--rate 1000] [--seconds 10] [--clients 4]
 *                    [--tax-writers 1,8,32] [--tax-seconds 3] [--burst-rows 100000] [--poll-ms 100]
 *                    [--profile] [--out docs] [--workers 1] [--floor-sockets N] [--bare]
 *   --workers N      pgbell's targets run `pgbell start --workers N`; their RSS and CPU are the whole
 *                    process tree's (the primary and its workers)
 *   --floor-sockets  sockets for the targets that are not pgbell (single processes): with workers,
 *                    the floors run at the sockets of one of pgbell's processes (sockets / workers)
 *   npm run bench -- --from-json docs/benchmarks.json   rewrite the report (e.g. after editing notes.md)
 *   BENCH_DATABASE_URL=postgres://… to use a server you have (scratch databases are created on it);
 *   otherwise embedded Postgres is started in a temp dir.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.js';
import { freePort } from '../../src/cli/embedded.js';
import { databaseUrl } from '../helpers/pg.js';
import { benchServer } from './server.js';
import type { ClientJob, FromClient, TargetKind, ToClient } from './clients.js';
import { summarizeProfile, writeReport, type DbCost, type Report } from './report.js';

const { values: args } = parseArgs({
  options: {
    scenarios: { type: 'string', default: 'latency,storm,throughput,writers' },
    targets: { type: 'string', default: 'pgbell,pgbell-debug,pgbell-poll,pgbell-wal,listen,relay,relay-read,relay-wal,socketio,broadcast' },
    'poll-ms': { type: 'string', default: '100' },
    sockets: { type: 'string', default: '10000' },
    users: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    clients: { type: 'string', default: '2,4' },
    'tax-writers': { type: 'string', default: '1,8,32' },
    'tax-seconds': { type: 'string', default: '3' },
    'burst-rows': { type: 'string', default: '100000' },
    profile: { type: 'boolean', default: false },
    out: { type: 'string', default: 'docs' },
    'from-json': { type: 'string' },
    workers: { type: 'string', default: '1' },
    'floor-sockets': { type: 'string' },
    /** Without test/bench/notes.md's reading (which is of the default run) appended. */
    bare: { type: 'boolean', default: false },
  },
});
const SCENARIOS = new Set(args.scenarios.split(','));
type Target = TargetKind | 'listen' | 'pgbell-poll' | 'pgbell-wal' | 'pgbell-debug' | 'pgbell-warn' | 'relay-wal' | 'relay-read';
const isPgbell = (t: Target) => t.startsWith('pgbell');
const TARGETS = args.targets.split(',') as Target[];
const S = Number(args.sockets);
const WORKERS = Number(args.workers);
/** Sockets for a target in the latency scenario: the floors are one process each. */
const socketsFor = (t: Target) => (isPgbell(t) ? S : Number(args['floor-sockets'] ?? S));
const U = Number(args.users);
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
/** Client processes: the latency scenario runs with each count (all targets with the first, pgbell and floor B with the rest); the others use the first. */
const CLIENT_COUNTS = args.clients.split(',').map(Number);
const CLIENTS = CLIENT_COUNTS[0]!;
const SECRET = 'bench-secret-bench-secret-bench-secret';
const WRITER_POOL = 8;
const now = () => Number(process.hrtime.bigint());
const ms = (ns: number) => ns / 1e6;
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));
const log = (...a: unknown[]) => console.log(...a);

interface Dbs {
  /** pgbell's schema and triggers. */
  pgbell: string;
  /** pgbell's schema, its triggers migrated for poll mode (no NOTIFY). */
  poll: string;
  /** pgbell's schema, its triggers replaced by a row trigger that sends the row (floor B, peer C). */
  peer: string;
  /** pgbell's schema, no triggers (peer D). */
  plain: string;
  /** pgbell's schema, its triggers migrated for WAL mode (no NOTIFY, publication pgbell). */
  wal: string;
  /** pgbell's schema, no triggers, publication bench_wal on "Alert" (floor W). */
  walpeer: string;
}

// ---------- targets ----------

interface Running {
  kind: Target;
  url: string;
  pid: number;
  stop(): Promise<void>;
}

async function startTarget(kind: Exclude<Target, 'listen'>, dbs: Dbs, profileDir?: string, fixedPort?: number): Promise<Running> {
  const port = fixedPort ?? (await freePort());
  const env = { PATH: process.env.PATH, PORT: String(port), HOST: '127.0.0.1' };
  let child: ChildProcess;
  if (isPgbell(kind)) {
    // BENCH_PGBELL_FLAGS: extra node flags for the daemon, e.g. "--trace-gc" or "--max-semi-space-size=64".
    const flags = [...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), ...(process.env.BENCH_PGBELL_FLAGS?.split(' ').filter(Boolean) ?? [])];
    const mode =
      kind === 'pgbell-poll'
        ? { DATABASE_URL: dbs.poll, PGBELL_MODE: 'poll', PGBELL_POLL_MS: args['poll-ms'] }
        : kind === 'pgbell-wal'
          ? { DATABASE_URL: dbs.wal, PGBELL_MODE: 'wal' }
          : { DATABASE_URL: dbs.pgbell };
    // pgbell at its default log level (pgbell-debug: with the per-alert lines), logging to a
    // file as a deployed daemon would.
    const logFile = path.join(os.tmpdir(), `pgbell-bench-${kind}.log`);
    const out = openSync(logFile, 'w');
    child = spawn(process.execPath, [...flags, 'bin/pgbell.js', 'start'], {
      // NODE_CLUSTER_SCHED_POLICY (rr or none): how node:cluster hands connections to workers.
      env: { ...env, ...mode, ...(WORKERS > 1 ? { PGBELL_WORKERS: String(WORKERS) } : {}), ...(process.env.NODE_CLUSTER_SCHED_POLICY ? { NODE_CLUSTER_SCHED_POLICY: process.env.NODE_CLUSTER_SCHED_POLICY } : {}), SESSION_SECRET: SECRET, ...(kind === 'pgbell-debug' ? { LOG_LEVEL: 'debug' } : kind === 'pgbell-warn' ? { LOG_LEVEL: 'warn' } : {}), MAX_CONNECTIONS_PER_USER: '1000', MAX_CONNECTIONS: '30000' },
      stdio: ['ignore', out, 'inherit'],
    });
    closeSync(out);
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error('pgbell exited while starting');
      const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false);
      if (ok) break;
      if (i > 200) throw new Error('pgbell did not become healthy');
      await sleep(100);
    }
  } else {
    const file = new URL(`./peers/${kind}.ts`, import.meta.url).pathname;
    child = fork(file, [], { env: { ...env, DATABASE_URL: kind === 'relay-wal' ? dbs.walpeer : kind === 'relay-read' ? dbs.pgbell : dbs.peer }, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', () => reject(new Error(`${kind} exited while starting`)));
    });
  }
  const url = kind === 'socketio' ? `http://127.0.0.1:${port}` : `ws://127.0.0.1:${port}/`;
  return {
    kind,
    url,
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** CPU time a process has used (user + system), in seconds. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** `pid` and every process below it (a primary's workers). */
async function tree(pid: number): Promise<number[]> {
  const parent = new Map<number, number>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => null);
    if (stat) parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) for (const [child, p] of parent) if (p === out[i]) out.push(child);
  return out;
}

/** CPU seconds of a process and its children (see tree); one that ends meanwhile is not counted. */
async function treeCpuSeconds(pid: number): Promise<number> {
  let sum = 0;
  for (const p of await tree(pid)) sum += await cpuSeconds(p).catch(() => 0);
  return sum;
}

/** Resident set size of a process and its children, in bytes. */
async function rss(pid: number): Promise<number> {
  let sum = 0;
  for (const p of await tree(pid)) {
    const status = await readFile(`/proc/${p}/status`, 'utf8').catch(() => '');
    sum += Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
  }
  return sum;
}

/** The database a target's writers write to. */
function dbFor(kind: Target, dbs: Dbs): string {
  if (kind === 'pgbell-poll') return dbs.poll;
  if (kind === 'pgbell-wal') return dbs.wal;
  if (kind === 'relay-wal') return dbs.walpeer;
  if (isPgbell(kind) || kind === 'relay-read') return dbs.pgbell;
  return kind === 'broadcast' ? dbs.plain : dbs.peer;
}

// ---------- clients ----------

class Clients {
  readonly procs: ChildProcess[] = [];

  static async connect(target: Exclude<Target, 'listen'>, url: string, users: string[], processes = CLIENTS, reconnect = false): Promise<{ clients: Clients; ms: number; failed: number }> {
    const kind: TargetKind = isPgbell(target) ? 'pgbell' : target === 'relay-wal' || target === 'relay-read' ? 'relay' : (target as TargetKind);
    const c = new Clients();
    const per = Math.ceil(users.length / processes);
    const localAddrs = Array.from({ length: 16 }, (_, i) => `127.0.0.${i + 2}`);
    const jobs: Array<Promise<FromClient>> = [];
    for (let p = 0; p * per < users.length; p++) {
      const proc = fork(new URL('./clients.ts', import.meta.url).pathname, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      c.procs.push(proc);
      const job: ClientJob = { kind, url, users: users.slice(p * per, (p + 1) * per), secret: SECRET, localAddrs, concurrency: 200, reconnect };
      jobs.push(c.#ask(proc, { type: 'start', job }));
    }
    const ready = (await Promise.all(jobs)) as Array<Extract<FromClient, { type: 'ready' }>>;
    return { clients: c, ms: Math.max(...ready.map((r) => r.ms)), failed: ready.reduce((n, r) => n + r.failed, 0) };
  }

  #ask(proc: ChildProcess, msg: ToClient): Promise<FromClient> {
    return new Promise((resolve) => {
      proc.once('message', (m) => resolve(m as FromClient));
      proc.send(msg);
    });
  }

  reset(): void {
    for (const p of this.procs) p.send({ type: 'reset' } satisfies ToClient);
  }

  /** Reconnecting sockets (ClientJob.reconnect): how many are live, and 1013 refusals so far. */
  async status(): Promise<{ live: number; total: number; refused: number }> {
    const all = (await Promise.all(this.procs.map((p) => this.#ask(p, { type: 'status' })))) as Array<Extract<FromClient, { type: 'status' }>>;
    return { live: all.reduce((n, a) => n + a.live, 0), total: all.reduce((n, a) => n + a.total, 0), refused: all.reduce((n, a) => n + a.refused, 0) };
  }

  /** Reconnecting sockets: alerts titled `prefix…` that a socket lacks of its user's, repeated within a connection, or of another user. */
  async verify(prefix: string, expected: Record<string, number>): Promise<{ lost: number; repeats: number; foreign: number }> {
    const all = (await Promise.all(this.procs.map((p) => this.#ask(p, { type: 'verify', prefix, expected })))) as Array<Extract<FromClient, { type: 'verified' }>>;
    return { lost: all.reduce((n, a) => n + a.lost, 0), repeats: all.reduce((n, a) => n + a.repeats, 0), foreign: all.reduce((n, a) => n + a.foreign, 0) };
  }

  async collect(): Promise<{ titles: string[]; at: number[]; received: number; foreign: number; last: number }> {
    const all = (await Promise.all(this.procs.map((p) => this.#ask(p, { type: 'collect' })))) as Array<Extract<FromClient, { type: 'samples' }>>;
    return {
      titles: all.flatMap((a) => a.titles),
      at: all.flatMap((a) => a.at),
      received: all.reduce((n, a) => n + a.received, 0),
      foreign: all.reduce((n, a) => n + a.foreign, 0),
      last: Math.max(...all.map((a) => a.last)),
    };
  }

  /** Polls until `n` alerts arrived in all (or `timeoutMs` passed); returns the count. */
  async waitFor(n: number, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const counts = (await Promise.all(this.procs.map((p) => this.#ask(p, { type: 'collect' })))) as Array<Extract<FromClient, { type: 'samples' }>>;
      const got = counts.reduce((s, a) => s + a.received, 0);
      if (got >= n || Date.now() > deadline) return got;
      await sleep(100);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.procs.map((p) => new Promise((r) => (p.once('exit', r), p.send({ type: 'close' } satisfies ToClient)))));
  }
}

// ---------- writers ----------

interface Stamp {
  send: number;
  ack: number;
  txid: string;
}

/**
 * R single-row INSERTs per second for `seconds`, from a pool of writers, each on its own
 * schedule slot. Alert k goes to user `users[k % users.length]` with title `k`. For the
 * broadcast peer the writer then POSTs the row, as that design's writers must.
 */
async function paced(url: string, users: string[], rate: number, seconds: number, broadcast?: string): Promise<{ stamps: Stamp[]; achieved: number }> {
  const total = Math.round(rate * seconds);
  const stamps: Stamp[] = new Array(total);
  const clients = await connectMany(url, WRITER_POOL, WRITER_APP);
  let next = 0;
  const t0 = now();
  const writer = async (c: pg.Client) => {
    for (;;) {
      const k = next++;
      if (k >= total) return;
      const due = t0 + (k / rate) * 1e9;
      const wait = ms(due - now());
      if (wait > 1) await sleep(wait);
      const user = users[(k * 7919) % users.length]!;
      const send = now();
      const { rows } = await c.query<{ id: string; tx: string; createdAt: Date }>(
        'INSERT INTO "Alert" ("userId", title) VALUES ($1, $2) RETURNING id, pg_current_xact_id()::text AS tx, "createdAt"',
        [user, String(k)],
      );
      const ack = now();
      stamps[k] = { send, ack, txid: rows[0]!.tx };
      if (broadcast) {
        await fetch(broadcast, { method: 'POST', body: JSON.stringify({ id: rows[0]!.id, userId: user, title: String(k), createdAt: rows[0]!.createdAt }) });
      }
    }
  };
  await Promise.all(clients.map(writer));
  const elapsed = ms(now() - t0) / 1000;
  await Promise.all(clients.map((c) => c.end()));
  return { stamps, achieved: total / elapsed };
}

export interface Percentiles {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

function percentiles(samples: number[]): Percentiles {
  const s = Float64Array.from(samples).sort();
  const at = (q: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : NaN);
  return { n: s.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: s.length ? s[s.length - 1]! : NaN };
}

// ---------- what a target costs the database ----------

/** The writers' application_name: their statements and backends are not the target's cost. */
const WRITER_APP = 'bench-writer';
/** The bench's own connections (setup, this monitor): not the target's either. */
const BENCH_APPS = [WRITER_APP, 'bench'];


/** CPU seconds of a local process, or null if it is not one (gone, or another machine's). */
async function procCpu(pid: number): Promise<number | null> {
  try {
    return await cpuSeconds(pid);
  } catch {
    return null;
  }
}

/**
 * Starts measuring what the sessions on `url`'s database other than the bench's own cost it;
 * the returned function ends the measure. pg_stat_statements is reset (server-wide: runs are
 * one at a time) when the database has the extension.
 */
async function measureDb(url: string): Promise<() => Promise<DbCost>> {
  const [mon] = (await connectMany(url, 1)) as [pg.Client];
  const statements = await mon.query(`SELECT pg_stat_statements_reset() AS bench_monitor`).then(
    () => true,
    () => false,
  );
  const backends = async () =>
    (await mon.query<{ bench_monitor: number }>(`SELECT pid AS bench_monitor FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND NOT (coalesce(application_name, '') = ANY($1::text[]))`, [BENCH_APPS])).rows.map((r) => r.bench_monitor);
  const start = new Map<number, number | null>();
  for (const pid of await backends()) start.set(pid, await procCpu(pid));
  return async () => {
    try {
      const end = await backends();
      let cpu: number | null = 0;
      for (const pid of new Set([...start.keys(), ...end])) {
        const now = await procCpu(pid);
        // A backend that ended meanwhile is not counted; one that began is counted whole.
        if (now === null) {
          if (end.includes(pid)) cpu = null;
          continue;
        }
        if (cpu !== null) cpu += now - (start.get(pid) ?? 0);
      }
      let queries: number | null = null;
      let rows: number | null = null;
      let execMs: number | null = null;
      let top: DbCost['top'] = [];
      let longestMs: number | null = null;
      if (statements) {
        // Top-level statements only (pg_stat_statements.track = top): the writers' triggers are the writers'.
        const { rows: r } = await mon.query<{ calls: string | null; rows: string | null; ms: number | null; longest: number | null }>(
          `SELECT sum(s.calls)::text AS calls, sum(s.rows)::text AS rows, sum(s.total_exec_time) AS ms, max(s.max_exec_time) AS longest
             FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
            WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND s.query NOT LIKE '%bench_monitor%' AND s.query NOT LIKE 'INSERT INTO "Alert" ("userId", title) VALUES%'`,
        );
        queries = Number(r[0]?.calls ?? 0);
        rows = Number(r[0]?.rows ?? 0);
        execMs = Number(r[0]?.ms ?? 0);
        longestMs = r[0]?.longest ?? null;
        const { rows: t } = await mon.query<{ query: string; calls: string }>(
          `SELECT left(regexp_replace(s.query, '\\s+', ' ', 'g'), 90) AS query, s.calls::text AS calls
             FROM pg_stat_statements s
            WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND s.query NOT LIKE '%bench_monitor%' AND s.query NOT LIKE 'INSERT INTO "Alert" ("userId", title) VALUES%'
            ORDER BY s.calls DESC LIMIT 4`,
        );
        top = t.map((x) => ({ query: x.query, calls: Number(x.calls) }));
      }
      return { queries, rows, execMs, cpuSeconds: cpu, connections: end.length, top, longestMs };
    } finally {
      await mon.end();
    }
  };
}

// ---------- scenarios ----------

async function latency(kind: Target, dbs: Dbs, report: Report, profileDir?: string, processes = CLIENTS): Promise<void> {
  const S = socketsFor(kind);
  const users = Array.from({ length: U }, (_, i) => `u${i}`);
  const socketUsers = Array.from({ length: S }, (_, i) => users[i % U]!);
  const perUser = new Map<string, number>();
  for (const u of socketUsers) perUser.set(u, (perUser.get(u) ?? 0) + 1);
  log(`\n== latency: ${kind}, ${kind === 'listen' ? 'no sockets' : `${S} sockets over ${processes} client processes`}, ${U} users, ${RATE} INSERTs/s for ${SECONDS} s`);

  if (kind === 'listen') {
    const [l] = (await connectMany(dbs.pgbell, 1)) as [pg.Client];
    const got = new Map<string, number>();
    l.on('notification', (n) => {
      const t = now();
      const tx = (JSON.parse(n.payload!) as { txid: string }).txid;
      if (!got.has(tx)) got.set(tx, t);
    });
    await l.query('LISTEN pgbell');
    const { stamps, achieved } = await paced(dbs.pgbell, users, RATE, SECONDS);
    await sleep(1000);
    await l.end();
    const lat = stamps.filter((s) => got.has(s.txid)).map((s) => ms(got.get(s.txid)! - s.ack));
    const upper = stamps.filter((s) => got.has(s.txid)).map((s) => ms(got.get(s.txid)! - s.send));
    report.latency.push({ target: 'listen', clients: 0, sockets: 0, users: U, rate: RATE, achievedRate: achieved, expected: stamps.length, delivered: lat.length, foreign: 0, fromAck: percentiles(lat), fromSend: percentiles(upper) });
    printLatency(report.latency.at(-1)!);
    return;
  }

  const target = await startTarget(kind as Exclude<Target, 'listen'>, kind === 'broadcast' ? { ...dbs, peer: dbs.plain } : dbs, kind === 'pgbell' ? profileDir : undefined);
  try {
    await sleep(1000);
    const rssIdle = await rss(target.pid);
    const { clients, ms: connectMs, failed } = await Clients.connect(kind, target.url, socketUsers, processes);
    await sleep(2000);
    const rssHeld = await rss(target.pid);
    report.connections.push({ target: kind, clients: processes, sockets: S, connectMs, failed, rssIdle, rssHeld, perSocket: (rssHeld - rssIdle) / S });
    log(`   ${S} sockets connected${kind.startsWith('pgbell') ? ' and authenticated' : ''} in ${(connectMs / 1000).toFixed(1)} s (${failed} failed); RSS ${(rssIdle / 2 ** 20).toFixed(0)} → ${(rssHeld / 2 ** 20).toFixed(0)} MiB = ${((rssHeld - rssIdle) / S / 1024).toFixed(1)} KiB per socket`);
    clients.reset();
    const db = dbFor(kind, dbs);
    const cpu0 = await treeCpuSeconds(target.pid);
    // Reading the metrics resets the event-loop delay figures: what is read after covers the paced run.
    if (isPgbell(kind)) await fetch(target.url.replace('ws:', 'http:') + 'metrics').then((r) => r.text());
    const endDb = await measureDb(db);
    const { stamps, achieved } = await paced(db, users, RATE, SECONDS, kind === 'broadcast' ? target.url.replace('ws:', 'http:') + 'broadcast' : undefined);
    const expected = stamps.reduce((n, _, k) => n + perUser.get(users[(k * 7919) % users.length]!)!, 0);
    await clients.waitFor(expected, 10_000);
    const dbCost = await endDb();
    const cpu = (await treeCpuSeconds(target.pid)) - cpu0;
    if (isPgbell(kind) && kind !== 'pgbell-poll') {
      // pgbell's own view: notification received → fanned out (includes its read of the rows).
      const text = await (await fetch(target.url.replace('ws:', 'http:') + 'metrics')).text();
      const sum = Number(/^pgbell_delivery_seconds_sum (\S+)/m.exec(text)?.[1]);
      const count = Number(/^pgbell_delivery_seconds_count (\S+)/m.exec(text)?.[1]);
      const readSum = Number(/^pgbell_live_read_seconds_sum (\S+)/m.exec(text)?.[1]);
      const reads = Number(/^pgbell_live_read_seconds_count (\S+)/m.exec(text)?.[1]);
      // prom-client samples the loop with a 10 ms timer and reports each delay with that 10 ms in it.
      const lag = (q: string) => Math.max(0, Number(new RegExp(`^pgbell_nodejs_eventloop_lag_${q}_seconds (\\S+)`, 'm').exec(text)?.[1]) * 1000 - 10);
      log(`   inside pgbell: notification → sent, mean ${((sum / count) * 1000).toFixed(2)} ms over ${count} notifications; its reads from Postgres, ${reads > 0 ? `mean ${((readSum / reads) * 1000).toFixed(2)} ms over ${reads} reads` : 'none (the rows came with the stream)'}; event-loop delay (beyond its 10 ms sampling tick) p50 ${lag('p50').toFixed(2)} ms, p99 ${lag('p99').toFixed(2)} ms`);
      report.inside ??= [];
      report.inside.push({ target: kind, clients: processes, deliveryMs: (sum / count) * 1000, notifications: count, readMs: reads > 0 ? (readSum / reads) * 1000 : null, reads, loopP50Ms: lag('p50'), loopP99Ms: lag('p99') });
    }
    const got = await clients.collect();
    const fromAck: number[] = [];
    const fromSend: number[] = [];
    for (let i = 0; i < got.titles.length; i++) {
      const s = stamps[Number(got.titles[i])];
      if (!s) continue;
      fromAck.push(ms(got.at[i]! - s.ack));
      fromSend.push(ms(got.at[i]! - s.send));
    }
    const commit = percentiles(stamps.map((s) => ms(s.ack - s.send)));
    report.latency.push({ target: kind, clients: processes, sockets: S, users: U, rate: RATE, achievedRate: achieved, expected, delivered: got.received, foreign: got.foreign, fromAck: percentiles(fromAck), fromSend: percentiles(fromSend), cpuSeconds: cpu, commit, db: dbCost });
    printLatency(report.latency.at(-1)!);
    await clients.close();
  } finally {
    await target.stop();
  }
}

function printLatency(r: Report['latency'][number]): void {
  const f = (p: Percentiles) => `p50 ${p.p50.toFixed(2)}  p90 ${p.p90.toFixed(2)}  p99 ${p.p99.toFixed(2)}  p99.9 ${p.p999.toFixed(2)}  max ${p.max.toFixed(1)} ms`;
  log(`   ${r.achievedRate.toFixed(0)} INSERTs/s achieved; delivered ${r.delivered}/${r.expected}${r.foreign ? `, ${r.foreign} TO THE WRONG USER` : ''}${r.cpuSeconds !== undefined ? `; server CPU ${r.cpuSeconds.toFixed(2)} s (${((r.cpuSeconds / r.delivered) * 1e6).toFixed(0)} µs per delivery)` : ''}`);
  log(`   commit ack → socket: ${f(r.fromAck)}`);
  log(`   send → socket:       ${f(r.fromSend)}`);
  if (r.commit) log(`   writers' commit:     ${f(r.commit)}`);
  if (r.db) log(`   database: ${dbLine(r.db, r.delivered)} per 1,000 delivered; ${r.db.connections} connections`);
}

/** A DbCost per 1,000 of something, for the log. */
function dbLine(d: DbCost, n: number): string {
  const per = (x: number | null, digits = 1) => (x === null ? '–' : ((x / n) * 1000).toFixed(digits));
  return `${per(d.queries)} queries, ${per(d.rows)} rows, ${per(d.execMs)} ms executing, ${per(d.cpuSeconds === null ? null : d.cpuSeconds * 1000)} ms of backend CPU`;
}

/**
 * A reconnect storm: S sockets that reconnect as pgbell/client does (backoff with full jitter,
 * resuming from their cursors) are dropped at once by a restart of the daemon (SIGTERM, then a
 * new one on the same port). Alerts are written throughout; the time is from the restart's
 * start until every socket is live again, and every socket must end with every alert of its user.
 */
async function storm(dbs: Dbs, report: Report): Promise<void> {
  const users = Array.from({ length: U }, (_, i) => `u${i}`);
  const socketUsers = Array.from({ length: S }, (_, i) => users[i % U]!);
  log(`\n== storm: pgbell, ${S} sockets over ${CLIENTS} client processes, dropped at once by a restart, alerts written throughout`);
  const port = await freePort();
  let target = await startTarget('pgbell', dbs, undefined, port);
  const { clients } = await Clients.connect('pgbell', target.url, socketUsers, CLIENTS, true);
  const expected: Record<string, number> = {};
  const writer = await connectMany(dbs.pgbell, 1).then(([c]) => c!);
  let writing = true;
  let k = 0;
  /** Alerts titled storm-… until `writing` is false; `expected` counts each user's. */
  const write = async () => {
    while (writing) {
      const user = users[(k * 7919) % users.length]!;
      await writer.query('INSERT INTO "Alert" ("userId", title) VALUES ($1, $2)', [user, `storm-${user}-${k++}`]);
      expected[user] = (expected[user] ?? 0) + 1;
      await sleep(10);
    }
  };
  /** What the sockets lack, repeat or got of others; what is still on its way gets 10 s. */
  const verify = async () => {
    let v = await clients.verify('storm-', expected);
    for (let i = 0; i < 100 && v.lost > 0; i++) {
      await sleep(100);
      v = await clients.verify('storm-', expected);
    }
    return v;
  };
  const writes = write();
  try {
    await sleep(1000);
    const endDb = await measureDb(dbs.pgbell);
    const t0 = performance.now();
    await target.stop();
    const stoppedMs = performance.now() - t0;
    target = await startTarget('pgbell', dbs, undefined, port);
    const upMs = performance.now() - t0;
    const health = target.url.replace('ws:', 'http:') + 'health';
    let peakPending = 0;
    let status = await clients.status();
    for (;;) {
      const h = (await fetch(health).then((r) => r.json(), () => null)) as { pendingAuth?: number } | null;
      peakPending = Math.max(peakPending, h?.pendingAuth ?? 0);
      status = await clients.status();
      if (status.live === status.total || performance.now() - t0 > 180_000) break;
      await sleep(50);
    }
    const backMs = performance.now() - t0;
    const db = await endDb();
    await sleep(1000);
    writing = false;
    await writes;
    // Every socket resumes with its cursor: what was written while it was away arrives then.
    const v = await verify();
    report.storm = { sockets: S, clients: CLIENTS, backMs, stoppedMs, upMs, live: status.live, refused: status.refused, peakPending, alerts: k, ...v, db };
    log(`   database over the storm (restart to all back, its writes included): ${dbLine(db, status.live)} per 1,000 resumed sockets; ${db.connections} connections`);
    log(`   all ${status.live}/${status.total} back in ${(backMs / 1000).toFixed(1)} s from the restart's start (old daemon gone after ${(stoppedMs / 1000).toFixed(1)} s, new one healthy after ${(upMs / 1000).toFixed(1)} s); ${status.refused} refusals with 1013; peak unauthenticated ${peakPending}; ${k} alerts written meanwhile: lost ${v.lost}, repeats ${v.repeats}, to the wrong user ${v.foreign}`);
    if (WORKERS > 1) {
      // A rolling restart (SIGHUP to the primary): each worker replaced in turn, its sockets
      // moving to the others; alerts are written throughout again.
      writing = true;
      const more = write();
      // A client's backoff starts again after 10 s live, as pgbell/client's does: the storm's
      // clients are given that, as a deploy's would have long had.
      await sleep(11_000);
      const logFile = path.join(os.tmpdir(), 'pgbell-bench-pgbell.log');
      const t1 = performance.now();
      process.kill(target.pid, 'SIGHUP');
      while (!(await readFile(logFile, 'utf8')).includes('rolling restart done') && performance.now() - t1 < 300_000) await sleep(100);
      const doneMs = performance.now() - t1;
      for (;;) {
        status = await clients.status();
        if (status.live === status.total || performance.now() - t1 > 300_000) break;
        await sleep(50);
      }
      const rollMs = performance.now() - t1;
      await sleep(1000);
      writing = false;
      await more;
      const rv = await verify();
      report.storm.rolling = { workers: WORKERS, doneMs, backMs: rollMs, live: status.live, alerts: k, ...rv };
      log(`   rolling restart of ${WORKERS} workers: done in ${(doneMs / 1000).toFixed(1)} s, all ${status.live}/${status.total} sockets live after ${(rollMs / 1000).toFixed(1)} s; ${k} alerts written in all: lost ${rv.lost}, repeats ${rv.repeats}, to the wrong user ${rv.foreign}`);
    }
  } finally {
    writing = false;
    await writes.catch(() => {});
    await writer.end();
    await clients.close();
    await target.stop();
  }
}

async function throughput(kind: Target, dbs: Dbs, report: Report, profileDir?: string): Promise<void> {
  // Broadcast: one POST per alert, so its writers, not its server, are the bound. Poll mode:
  // the same delivery path as pgbell, plus up to one interval.
  if (kind === 'broadcast' || kind === 'listen' || kind === 'pgbell-poll' || kind === 'pgbell-debug' || kind === 'pgbell-warn') return;
  // WAL mode and floor W: their own databases.
  const users = Array.from({ length: S }, (_, i) => `u${i}`);
  log(`\n== throughput: ${kind}, ${S} sockets (one per user)`);
  const target = await startTarget(kind, dbs, kind === 'pgbell' ? profileDir : undefined);
  const db = dbFor(kind, dbs);
  try {
    const { clients } = await Clients.connect(kind, target.url, users);
    const [w] = (await connectMany(db, 1)) as [pg.Client];
    const run = async (label: string, expected: number, write: () => Promise<void>): Promise<void> => {
      clients.reset();
      await sleep(500);
      const t0 = now();
      await write();
      const acked = now();
      const got = await clients.waitFor(expected, 120_000);
      const { last, foreign } = await clients.collect();
      const seconds = ms(last - t0) / 1000;
      report.throughput.push({ target: kind, case: label, alerts: expected, delivered: got, foreign, seconds, perSecond: got / seconds, ackToLastMs: ms(last - acked) });
      log(`   ${label}: ${got}/${expected} delivered in ${(seconds * 1000).toFixed(0)} ms = ${(got / seconds).toFixed(0)} alerts/s${foreign ? `, ${foreign} TO THE WRONG USER` : ''}`);
    };
    // (a) one alert per socket, transactions of 100 rows (each to 100 different users), 4 writers.
    await run('a: 100-row transactions, one alert per socket', S, async () => {
      const writers = await connectMany(db, 4);
      let next = 0;
      await Promise.all(writers.map(async (c) => {
        for (;;) {
          const start = next;
          next += 100;
          if (start >= S) break;
          await c.query(`INSERT INTO "Alert" ("userId", title) SELECT 'u' || i, 'a' || i FROM generate_series($1::int, $2::int) i`, [start, Math.min(S, start + 100) - 1]);
        }
        await c.end();
      }));
    });
    // (b) bursts: 1,000-row transactions to the same 100 sockets (10 alerts each per transaction), 4 writers.
    const burst = Number(args['burst-rows']);
    const burstUsers = Math.min(100, S);
    await run(`b: bursts of 1,000 rows to ${burstUsers} sockets, ${burst} alerts`, burst, async () => {
      const writers = await connectMany(db, 4);
      let next = 0;
      await Promise.all(writers.map(async (c) => {
        while ((next += 1000) <= burst) await c.query(`INSERT INTO "Alert" ("userId", title) SELECT 'u' || (i % $1::int), 'b' || i FROM generate_series(1, 1000) i`, [burstUsers]);
        await c.end();
      }));
    });
    // (c) broadcast: one statement, one alert for each user.
    await run(`c: one statement, one alert for each of ${S} users`, S, async () => {
      await w.query(`INSERT INTO "Alert" ("userId", title) SELECT 'u' || i, 'c' || i FROM generate_series(0, $1::int - 1) i`, [S]);
    });
    await w.end();
    await clients.close();
  } finally {
    await target.stop();
  }
}

/** Single-row autocommit INSERTs/s from `writers` connections for `seconds`. */
async function insertRate(url: string, writers: number, seconds: number): Promise<number> {
  const clients = await connectMany(url, writers);
  let n = 0;
  const end = Date.now() + seconds * 1000;
  await Promise.all(clients.map(async (c, w) => {
    while (Date.now() < end) {
      await c.query(`INSERT INTO "Alert" ("userId", title) VALUES ($1, 'tax')`, [`u${(n * 31 + w) % U}`]);
      n++;
    }
  }));
  await Promise.all(clients.map((c) => c.end()));
  return n / seconds;
}

async function writerTax(dbs: Dbs, report: Report): Promise<void> {
  const seconds = Number(args['tax-seconds']);
  log(`\n== writer tax: single-row autocommit INSERTs/s, ${seconds} s each`);
  for (const writers of args['tax-writers'].split(',').map(Number)) {
    await sql(dbs.pgbell, 'ALTER TABLE "Alert" DISABLE TRIGGER USER');
    const off = await insertRate(dbs.pgbell, writers, seconds);
    await sql(dbs.pgbell, 'ALTER TABLE "Alert" ENABLE TRIGGER USER');
    const notify = await insertRate(dbs.pgbell, writers, seconds);
    // Poll mode: the same triggers, told to send no NOTIFY (an empty channel).
    await setChannel(dbs.pgbell, '');
    const poll = await insertRate(dbs.pgbell, writers, seconds);
    await setChannel(dbs.pgbell, 'pgbell');
    // WAL mode: its triggers (no NOTIFY) with pgbell-wal streaming the changes as they commit.
    const streaming = await startTarget('pgbell-wal', dbs);
    const wal = await insertRate(dbs.wal, writers, seconds).finally(() => streaming.stop());
    report.writerTax.push({ writers, off, notify, poll, wal });
    log(`   ${String(writers).padStart(2)} writers: triggers off ${off.toFixed(0).padStart(6)}/s   notify ${notify.toFixed(0).padStart(6)}/s (${(notify / off).toFixed(2)})   poll ${poll.toFixed(0).padStart(6)}/s (${(poll / off).toFixed(2)})   wal ${wal.toFixed(0).padStart(6)}/s (${(wal / off).toFixed(2)})`);
  }
}

async function setChannel(url: string, channel: string): Promise<void> {
  await migrate(url, { channel });
}

// ---------- setup ----------

/**
 * `n` connected clients. Each gets an 'error' listener: a database dropped WITH (FORCE) under a
 * failed run would otherwise crash the process instead of ending it with the real error.
 */
async function connectMany(url: string, n: number, applicationName = 'bench'): Promise<pg.Client[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const c = new pg.Client({ connectionString: url, application_name: applicationName });
      c.on('error', () => {});
      await c.connect();
      return c;
    }),
  );
}

async function sql(url: string, text: string, params: unknown[] = []): Promise<any[]> {
  const [c] = (await connectMany(url, 1)) as [pg.Client];
  try {
    return (await c.query(text, params)).rows;
  } finally {
    await c.end();
  }
}

async function createDatabases(serverUrl: string): Promise<{ dbs: Dbs; drop: () => Promise<void> }> {
  const names = {
    pgbell: `bench_pgbell_${process.pid}`,
    poll: `bench_poll_${process.pid}`,
    peer: `bench_peer_${process.pid}`,
    plain: `bench_plain_${process.pid}`,
    wal: `bench_wal_${process.pid}`,
    walpeer: `bench_walpeer_${process.pid}`,
  };
  const dbs = {} as Dbs;
  const userCount = Math.max(S, U);
  for (const [k, name] of Object.entries(names) as Array<[keyof Dbs, string]>) {
    await sql(serverUrl, `CREATE DATABASE ${name}`);
    const url = databaseUrl(serverUrl, name);
    dbs[k] = url;
    await migrate(url, { channel: k === 'poll' || k === 'wal' ? '' : 'pgbell', publish: k === 'wal' });
    // What each target costs the database (measureDb), where the server has the module loaded.
    await sql(url, 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements').catch(() => {});
    await sql(url, `INSERT INTO "User" (id, email) SELECT 'u' || i, 'u' || i || '@example.test' FROM generate_series(0, $1::int - 1) i`, [userCount]);
    if (k === 'peer' || k === 'plain' || k === 'walpeer') {
      await sql(url, `DROP TRIGGER pgbell_insert ON "Alert"; DROP TRIGGER pgbell_update ON "Alert"; DROP TRIGGER pgbell_delete ON "Alert"; DROP TRIGGER pgbell_truncate ON "Alert"`);
    }
    if (k === 'walpeer') await sql(url, `CREATE PUBLICATION bench_wal FOR TABLE "Alert" WITH (publish = 'insert')`);
    if (k === 'peer') {
      await sql(url, `
        CREATE FUNCTION bench_relay() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify('relay', json_build_object('id', NEW.id, 'userId', NEW."userId", 'type', NEW.type, 'title', NEW.title,
            'message', NEW.message, 'createdAt', NEW."createdAt")::text);
          RETURN NULL;
        END $$;
        CREATE TRIGGER bench_relay AFTER INSERT ON "Alert" FOR EACH ROW EXECUTE FUNCTION bench_relay();`);
    }
  }
  return {
    dbs,
    drop: async () => {
      for (const name of Object.values(names)) await sql(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
    },
  };
}

async function main(): Promise<void> {
  const { url: serverUrl, stop: cleanup } = await benchServer();
  const { dbs, drop } = await createDatabases(serverUrl);
  const version = (await sql(dbs.pgbell, 'SHOW server_version'))[0].server_version as string;
  const report: Report = {
    at: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '?', memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, postgres: version },
    params: { sockets: S, users: U, rate: RATE, seconds: SECONDS, clients: CLIENTS, writerPool: WRITER_POOL, ...(WORKERS > 1 ? { workers: WORKERS } : {}), ...(args['floor-sockets'] ? { floorSockets: Number(args['floor-sockets']) } : {}) },
    latency: [],
    connections: [],
    throughput: [],
    writerTax: [],
    profile: null,
  };
  log(`pgbell benchmarks: ${report.machine.cpus} cores, ${report.machine.memGiB} GiB, Node ${process.version}, PostgreSQL ${version}`);
  const profileDir = args.profile ? await mkdtemp(path.join(os.tmpdir(), 'pgbell-prof-')) : undefined;
  try {
    // The profile is of pgbell in the first scenario run.
    if (SCENARIOS.has('latency')) {
      for (const t of TARGETS) await latency(t, dbs, report, profileDir);
      // The goals' ratios at every client count: pgbell and floor B again with each further one.
      for (const n of CLIENT_COUNTS.slice(1)) for (const t of TARGETS.filter((t) => t === 'pgbell' || t === 'relay' || t === 'relay-read')) await latency(t, dbs, report, undefined, n);
    }
    if (SCENARIOS.has('storm') && TARGETS.includes('pgbell')) await storm(dbs, report);
    const throughputProfile = SCENARIOS.has('latency') ? undefined : profileDir;
    if (SCENARIOS.has('throughput')) for (const t of TARGETS) await throughput(t, dbs, report, throughputProfile);
    if (SCENARIOS.has('writers')) await writerTax(dbs, report);
    if (profileDir) {
      const file = (await readdir(profileDir)).find((f) => f.endsWith('.cpuprofile'));
      if (file) report.profile = { ...summarizeProfile(JSON.parse(await readFile(path.join(profileDir, file), 'utf8'))), scenario: SCENARIOS.has('latency') ? 'latency' : 'throughput' };
    }
  } finally {
    await drop();
    await cleanup();
  }
  await mkdir(args.out, { recursive: true });
  const written = await writeReport(report, args.out, !args.bare);
  log(`\nwrote ${written.join(', ')}`);
}

if (args['from-json']) {
  // Rewrites the markdown and chart from a report's JSON (after editing notes.md), without running anything.
  const written = await writeReport(JSON.parse(await readFile(args['from-json'], 'utf8')) as Report, args.out, !args.bare);
  log(`wrote ${written.join(', ')}`);
} else await main();
process.exit(0);
