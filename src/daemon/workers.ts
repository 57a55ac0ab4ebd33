/**
 * `pgbell start --workers N`: every core of a machine on one port, with one database reader.
 *
 * Why one file: daemon.ts is one process; this is the machine around N of them. The
 * primary process (node:cluster; the OS hands each connection to a worker in turn) holds no
 * socket. It runs the one change source and the live read (the Forwarder of
 * src/sources/forwarded.ts), so the database sees one listener (or replication stream, or
 * poller) and one live read per step however many workers there are; each worker is a daemon
 * whose source is the primary's, forwarded over its IPC channel, and whose own reads are only
 * its sockets' syncs (from their cursors) and /alerts.
 *
 * - A worker subscribes to the forwarded changes before it takes a socket (hello, welcome), so
 *   every change it missed committed before any of its sockets' first read: nothing to catch up.
 * - A worker that dies is started again (after a backoff when they keep dying); its sockets'
 *   clients reconnect, to any worker, with their cursors.
 * - /health's details and /metrics are asked of every worker and added up by the primary.
 * - Redis fan-out mode: each worker is a node of its own, as on separate machines: its own
 *   subscription, and a relay that takes the database's lock only if no other process holds it.
 *   The database still has one reader (the relay); see docs/operations.md, "Workers".
 * - SIGTERM/SIGINT to the primary: each worker stops as one daemon does (drain, close with 1001)
 *   while the primary keeps forwarding; then the primary closes its source.
 * - SIGHUP to the primary (Machine.restart): a rolling restart. Each worker in turn gets a
 *   replacement first, which loads the code on disk afresh, and stops once it serves; its
 *   sockets reconnect to the others with their cursors, so the machine never serves fewer than N.
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { AggregatorRegistry, Counter, Gauge } from 'prom-client';
import { pruneTombstones } from '../db/changes.js';
import { createDb, type Db } from '../db/connect.js';
import type { Logger } from '../log.js';
import { Metrics } from '../metrics.js';
import { ForwardedSource, Forwarder, type ForwardedMessage, type SourceStatus } from '../sources/forwarded.js';
import { createSource, type ChangeSource } from '../sources/index.js';
import { checkDatabase, checkListenDatabase, StartupError } from './checks.js';
import { startDaemon, type Daemon, type DaemonOptions } from './daemon.js';

/** Workers for a PGBELL_WORKERS value: `auto` is one per core. */
export function workerCount(value: number | 'auto'): number {
  return value === 'auto' ? availableParallelism() : value;
}

/** Whether this process is a worker that the primary started. */
export const isWorker = (): boolean => cluster.isWorker;

/** Messages between the primary and a worker, apart from the forwarded changes. */
type Control =
  | { pgbell: 'hello' }
  | { pgbell: 'welcome'; s: SourceStatus | null }
  | { pgbell: 'ready'; url: string; port: number }
  | { pgbell: 'ask'; id: number; what: 'health' | 'metrics' }
  | { pgbell: 'answer'; id: number; body: unknown }
  | { pgbell: 'local?'; id: number; what: 'health' | 'metrics' }
  | { pgbell: 'local'; id: number; body: unknown };

const FORWARDED = new Set(['step', 'resumed', 'revoke', 'status']);
/** How long the primary waits for each worker's part of /health or /metrics. */
const ASK_MS = 2000;
/** A worker that lived this long was healthy: the next restart waits the least again. */
const HEALTHY_MS = 10_000;
/** How long a stopping primary waits for its workers before killing them. */
const STOP_MS = 15_000;

function isPgbell(msg: unknown): msg is { pgbell: string } {
  return typeof msg === 'object' && msg !== null && typeof (msg as { pgbell?: unknown }).pgbell === 'string';
}

export interface Machine {
  url: string;
  port: number;
  stop(): Promise<void>;
  /** Replaces every worker, one at a time (see the file's header); resolves when done. */
  restart(): Promise<void>;
}

/** The primary: the source, the live read, and N workers; resolves once every worker serves. */
export async function startMachine(opts: DaemonOptions, workers: number, log: Logger): Promise<Machine> {
  const mode = opts.mode ?? 'notify';
  const redis = opts.fanout === 'redis';
  const listenUrl = opts.listenDatabaseUrl ?? opts.databaseUrl;
  let db: Db | null = null;
  let source: ChangeSource | null = null;
  let forwarder: Forwarder | null = null;
  const timers: NodeJS.Timeout[] = [];
  /** Workers that said hello: they get every forwarded message from then on. */
  const subscribed = new Set<Worker>();
  const ready = new Map<Worker, { url: string; port: number }>();
  const born = new Map<Worker, number>();
  let everReady = false;
  let stopping = false;
  let restarts = 0;
  let quickDeaths = 0;
  /** A rolling restart's workers: the one it stops (not replaced on exit) and its replacement until it serves. */
  const retiring = new Set<Worker>();
  let spare: Worker | null = null;
  /** Spares a rolling restart gave up on and killed: not replaced when they exit. */
  const abandoned = new Set<Worker>();
  /** The worker a rolling restart is replacing: if it dies first, its spare takes its place. */
  let replacing: Worker | null = null;
  const readyWaiters = new Map<Worker, () => void>();

  const send = (w: Worker, msg: ForwardedMessage | Control) => {
    if (w.isConnected()) w.send(msg);
  };
  const metrics = new Metrics({ connections: () => 0, users: () => 0, pendingAuth: () => 0, listenerReconnects: () => source?.status().reconnects ?? 0, queueUsage: () => null });
  new Gauge({ name: 'pgbell_workers', help: 'Worker processes serving sockets now (pgbell start --workers N)', registers: [metrics.registry], collect() { this.set(ready.size); } });
  const restartsMetric = new Counter({ name: 'pgbell_worker_restarts_total', help: 'Workers started again after one exited', registers: [metrics.registry] });

  const closeReader = async () => {
    for (const t of timers) clearInterval(t);
    await forwarder?.close();
    await source?.close();
    await db?.destroy();
  };

  if (!redis) {
    db = createDb(opts.databaseUrl, { applicationName: 'pgbell-reader', max: 3 });
    const theDb = db;
    try {
      await checkDatabase(theDb, mode === 'notify' ? opts.channel : '', mode);
      if (mode === 'notify') await checkListenDatabase(listenUrl, opts.listenDatabaseUrl ? 'LISTEN_DATABASE_URL' : 'DATABASE_URL');
      const src = createSource({ mode, db: theDb, listenUrl, channel: opts.channel, pollMs: opts.pollMs ?? 100, checkIntervalMs: opts.heartbeatMs, walCarryMaxBytes: opts.walCarryMaxBytes, log });
      source = src;
      forwarder = new Forwarder({ db: theDb, source: src, log, send: (msg) => subscribed.forEach((w) => send(w, msg)), liveRead: (s) => metrics.liveRead(s) });
      await src.start();
      if (mode === 'notify' && !(await src.probe(5000))) {
        throw new StartupError('LISTEN does not receive notifications sent to the database: point LISTEN_DATABASE_URL at a direct session connection to the primary (see `pgbell doctor`)');
      }
    } catch (err) {
      await closeReader();
      throw err;
    }
    // The probe moves horizons (notify mode) and finds a deaf listener, as in one daemon.
    const timeoutMs = Math.min(5000, Math.max(250, opts.heartbeatMs));
    timers.push(setInterval(() => void source!.probe(timeoutMs), opts.heartbeatMs));
    const hours = opts.tombstoneRetentionHours ?? 168;
    const prune = () =>
      pruneTombstones(theDb, hours).then(
        (n) => n > 0 && log.info({ pruned: n }, `pruned ${n} tombstones older than ${hours} h`),
        (err) => log.warn({ err: (err as Error).message }, 'pruning tombstones failed; will retry'),
      );
    void prune();
    timers.push(setInterval(prune, 3600_000));
    for (const t of timers) t.unref();
  }

  // Questions the primary asks every worker (their part of /health or /metrics).
  let nextId = 0;
  const asked = new Map<number, (body: unknown) => void>();
  const askAll = (what: 'health' | 'metrics') =>
    Promise.all(
      [...ready.keys()].map(
        (w) =>
          new Promise<{ w: Worker; body: unknown }>((resolve) => {
            const id = ++nextId;
            const timer = setTimeout(() => (asked.delete(id), resolve({ w, body: null })), ASK_MS);
            asked.set(id, (body) => (clearTimeout(timer), asked.delete(id), resolve({ w, body })));
            send(w, { pgbell: 'local?', id, what });
          }),
      ),
    );

  const machineHealth = async () => {
    const parts = await askAll('health');
    const answered = parts.filter((p) => p.body !== null) as Array<{ w: Worker; body: Record<string, any> }>;
    const sum = (k: string) => answered.reduce((n, p) => n + (Number(p.body[k]) || 0), 0);
    const listener = forwarder ? forwarder.status().status : (answered.find((p) => p.body.listener?.relay)?.body.listener ?? answered[0]?.body.listener ?? { state: 'connecting' });
    const ok = !stopping && answered.length >= workers && answered.every((p) => p.body.status === 'ok') && (!forwarder || (source!.state === 'connected' && !source!.deaf));
    const usage = answered.map((p) => p.body.notifyQueueUsage).filter((u): u is number => typeof u === 'number');
    return {
      status: ok ? 'ok' : 'degraded',
      connections: sum('connections'),
      timestamp: new Date().toISOString(),
      listener,
      pendingAuth: sum('pendingAuth'),
      waiting: sum('waiting'),
      waitingBytes: sum('waitingBytes'),
      notifyQueueUsage: usage.length > 0 ? Math.max(...usage) : null,
      uptimeSeconds: Math.round(process.uptime()),
      workers: {
        wanted: workers,
        serving: answered.length,
        restarts,
        each: parts.map(({ w, body }) => ({ id: w.id, pid: w.process.pid, ...(body === null ? { answered: false } : { status: (body as any).status, connections: (body as any).connections, pendingAuth: (body as any).pendingAuth }) })),
      },
    };
  };
  const machineMetrics = async () => {
    const parts = await askAll('metrics');
    const all = [await metrics.registry.getMetricsAsJSON(), ...parts.flatMap((p) => (p.body === null ? [] : [p.body as object[]]))];
    return AggregatorRegistry.aggregate(all).metrics();
  };

  let announce: (() => void) | null = null;
  let fail: (err: Error) => void = () => {};
  const allReady = new Promise<void>((resolve, reject) => {
    announce = resolve;
    fail = reject;
  });

  const onMessage = (w: Worker, msg: unknown) => {
    if (!isPgbell(msg)) return;
    const m = msg as Control;
    switch (m.pgbell) {
      case 'hello':
        subscribed.add(w);
        // Whatever is forwarded from here on reaches it, after this.
        send(w, { pgbell: 'welcome', s: forwarder?.status() ?? null });
        return;
      case 'ready':
        ready.set(w, { url: m.url, port: m.port });
        readyWaiters.get(w)?.();
        everReady = true;
        if (ready.size >= workers && announce) {
          announce();
          announce = null;
        }
        return;
      case 'local':
        asked.get(m.id)?.(m.body);
        return;
      case 'ask':
        void (m.what === 'health' ? machineHealth() : machineMetrics()).then(
          (body) => send(w, { pgbell: 'answer', id: m.id, body }),
          (err) => {
            log.warn({ err: (err as Error).message }, `gathering /${m.what} from the workers failed`);
            send(w, { pgbell: 'answer', id: m.id, body: null });
          },
        );
        return;
    }
  };

  /** Workers whose process could not be created: they will never exit, so they are ended here. */
  const unspawned = new WeakSet<Worker>();
  /** A new worker, or null when its process could not be created and Node threw (ENOMEM, E2BIG…). */
  const fork = (): Worker | null => {
    let w: Worker;
    try {
      w = cluster.fork();
    } catch (err) {
      log.error({ err: (err as Error).message }, `could not start a worker: ${(err as Error).message}`);
      return null;
    }
    born.set(w, Date.now());
    w.on('message', (msg) => onMessage(w, msg));
    w.on('error', (err) => {
      if (w.process.pid === undefined && !unspawned.has(w)) {
        // The spawn failed (EMFILE, EAGAIN, ENOENT…): Node emits this error and never 'exit',
        // so without this a rolling restart waited WORKER_START_MS for it, and a crashed
        // worker's replacement was never tried again.
        unspawned.add(w);
        delete cluster.workers?.[w.id];
        log.error({ err: err.message, worker: w.id }, `could not start worker ${w.id}: ${err.message}`);
        onExit(w, null, null);
        return;
      }
      // A worker's channel closing while a send is under way: its exit says what happened.
      log.debug({ err: err.message, worker: w.id }, 'worker channel error');
    });
    return w;
  };

  cluster.on('exit', (w, code, signal) => onExit(w, code, signal));
  const onExit = (w: Worker, code: number | null, signal: string | null) => {
    subscribed.delete(w);
    ready.delete(w);
    const lived = Date.now() - (born.get(w) ?? Date.now());
    born.delete(w);
    readyWaiters.get(w)?.();
    if (stopping) return;
    // A rolling restart's: the one it stopped was replaced before; a replacement that died
    // before serving ends the restart with the old worker still serving.
    if (retiring.delete(w) || abandoned.delete(w)) return;
    if (w === spare) {
      spare = null;
      return;
    }
    if (w === replacing) {
      // Died while its spare starts: the spare takes its place (or, if the spare fails, the
      // restart starts another): one replacement, not two.
      replacing = null;
      log.warn({ worker: w.id, pid: w.process.pid, code, signal }, `worker ${w.id} (pid ${w.process.pid}) exited (${signal ?? `code ${code}`}) while the rolling restart started its replacement`);
      return;
    }
    if (!everReady) {
      // The first workers cannot start (they printed why): so would every other.
      stopping = true;
      for (const other of Object.values(cluster.workers ?? {})) other?.process.kill('SIGTERM');
      void closeReader().finally(() => fail(new StartupError(`worker ${w.id} exited (${signal ?? `code ${code}`}) before it served: see its error above`)));
      return;
    }
    quickDeaths = lived >= HEALTHY_MS ? 0 : quickDeaths + 1;
    const delayMs = quickDeaths === 0 ? 0 : Math.min(5000, 100 * 2 ** (quickDeaths - 1));
    restarts++;
    restartsMetric.inc();
    log.warn({ worker: w.id, pid: w.process.pid, code, signal, livedMs: lived, delayMs }, `worker ${w.id} (pid ${w.process.pid}) ${unspawned.has(w) ? 'did not start' : `exited (${signal ?? `code ${code}`})`}; starting another in ${delayMs} ms`);
    startAnother(delayMs);
  };
  /** Forks a replacement after `delayMs`; one that cannot be created is tried again with the backoff. */
  const startAnother = (delayMs: number) =>
    setTimeout(() => {
      if (stopping || fork() !== null) return;
      quickDeaths++;
      restarts++;
      restartsMetric.inc();
      startAnother(Math.min(5000, 100 * 2 ** (quickDeaths - 1)));
    }, delayMs);

  for (let i = 0; i < workers; i++) {
    if (fork() !== null) continue;
    stopping = true;
    for (const other of Object.values(cluster.workers ?? {})) other?.process.kill('SIGTERM');
    await closeReader();
    throw new StartupError('could not start the workers: see the error above');
  }
  await allReady;
  const first = [...ready.values()][0]!;
  const how = redis ? 'Redis fan-out: each worker a node' : mode === 'poll' ? `poll mode, every ${opts.pollMs ?? 100} ms` : mode === 'wal' ? 'WAL mode, streaming publication pgbell' : `channel ${opts.channel}`;
  log.info({ port: first.port, workers, mode }, `pgbell listening on ${first.url} with ${workers} workers (${how}; one reader: this process)`);

  let stopped: Promise<void> | undefined;
  let rolling: Promise<void> | null = null;
  /** A SIGHUP during a rolling restart: one more after it, so every worker runs the newest code. */
  let again = false;
  const startMs = opts.workerStartMs ?? 60_000;
  const roll = async () => {
    const old = [...ready.keys()];
    log.info({ workers: old.length }, `rolling restart: replacing ${old.length} workers one at a time`);
    for (const w of old) {
      if (stopping) return;
      if (w.isDead()) continue;
      replacing = w;
      const fresh = fork();
      if (fresh === null) {
        replacing = null;
        log.error('rolling restart stopped: a new worker could not be started (see the error above); the others keep serving');
        return;
      }
      spare = fresh;
      // Ready, exited, or not ready in time (stuck starting): never wait for ever.
      const timer = setTimeout(() => readyWaiters.get(fresh)?.(), startMs);
      await new Promise<void>((resolve) => readyWaiters.set(fresh, resolve));
      clearTimeout(timer);
      readyWaiters.delete(fresh);
      const dead = replacing === null;
      replacing = null;
      if (!ready.has(fresh)) {
        // The spare goes (if it still runs); the old one keeps serving, or, if it died
        // meanwhile, an ordinary replacement starts.
        if (!fresh.isDead() && !unspawned.has(fresh)) {
          abandoned.add(fresh);
          fresh.process.kill('SIGKILL');
        }
        spare = null;
        if (dead && !stopping) startAnother(0);
        log.error({ worker: fresh.id }, `rolling restart stopped: the new worker ${fresh.id} did not serve within ${startMs / 1000} s or exited first (see its error above); the others keep serving`);
        return;
      }
      spare = null;
      if (stopping) return;
      if (dead) {
        log.info({ from: w.id, to: fresh.id }, `rolling restart: worker ${fresh.id} serves in place of worker ${w.id}, which had exited`);
        continue;
      }
      retiring.add(w);
      // Out of /health's count from now: it drains and closes its sockets with 1001, and their
      // clients reconnect to the others.
      ready.delete(w);
      const gone = new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve())));
      w.process.kill('SIGTERM');
      const kill = setTimeout(() => !w.isDead() && w.process.kill('SIGKILL'), STOP_MS);
      await gone;
      clearTimeout(kill);
      log.info({ from: w.id, to: fresh.id }, `rolling restart: worker ${fresh.id} serves in place of worker ${w.id}`);
    }
    log.info('rolling restart done');
  };
  const restart = (): Promise<void> => {
    if (stopping) return Promise.resolve();
    if (rolling) {
      again = true;
      log.info('a rolling restart is under way: another follows it');
      return rolling;
    }
    return (rolling = roll().finally(() => {
      rolling = null;
      if (again && !stopping) {
        again = false;
        void restart();
      }
    }));
  };
  return {
    url: first.url,
    port: first.port,
    restart,
    stop: () =>
      (stopped ??= (async () => {
        stopping = true;
        const alive = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
        const exited = Promise.all(alive.map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve())))));
        // Each worker drains and closes its sockets; forwarding goes on meanwhile.
        for (const w of alive) w.process.kill('SIGTERM');
        const timer = setTimeout(() => alive.forEach((w) => !w.isDead() && w.process.kill('SIGKILL')), STOP_MS);
        await exited;
        clearTimeout(timer);
        await closeReader();
        log.info('pgbell stopped');
      })()),
  };
}

/**
 * A worker: a daemon fed by the primary; resolves once it stopped (SIGTERM/SIGINT). A worker
 * whose primary is gone (killed) is ended by node:cluster at once; its clients reconnect.
 */
export async function runWorker(opts: DaemonOptions): Promise<void> {
  // A hangup of the terminal's process group reaches every worker too: the primary's rolling
  // restart answers it; by default it would kill the worker, starting or mid-stream.
  process.on('SIGHUP', () => {});
  const id = cluster.worker!.id;
  const log = (opts.log ?? (await import('../log.js')).createLogger(opts.logLevel ?? 'info')).child({ worker: id });
  const source = opts.fanout === 'redis' ? undefined : new ForwardedSource();
  let daemon: Daemon | null = null;
  let nextId = 0;
  const answers = new Map<number, (body: unknown) => void>();
  let welcomed: () => void = () => {};
  const welcome = new Promise<void>((resolve) => (welcomed = resolve));
  const send = (msg: Control) => {
    if (process.connected) process.send!(msg);
  };
  process.on('message', (msg: unknown) => {
    if (!isPgbell(msg)) return;
    if (FORWARDED.has(msg.pgbell)) return source?.receive(msg as ForwardedMessage);
    const m = msg as Control;
    switch (m.pgbell) {
      case 'welcome':
        if (m.s) source?.receive({ pgbell: 'status', s: m.s });
        welcomed();
        return;
      case 'answer':
        answers.get(m.id)?.(m.body);
        return;
      case 'local?': {
        const d = daemon;
        if (!d) return send({ pgbell: 'local', id: m.id, body: null });
        if (m.what === 'health') return send({ pgbell: 'local', id: m.id, body: d.health() });
        void d.metrics.registry.getMetricsAsJSON().then(
          (body) => send({ pgbell: 'local', id: m.id, body }),
          () => send({ pgbell: 'local', id: m.id, body: null }),
        );
        return;
      }
    }
  });
  const ask = (what: 'health' | 'metrics') =>
    new Promise<unknown>((resolve, reject) => {
      const n = ++nextId;
      const timer = setTimeout(() => (answers.delete(n), reject(new Error('the primary did not answer'))), ASK_MS * 2);
      answers.set(n, (body) => (clearTimeout(timer), answers.delete(n), body === null ? reject(new Error('the primary could not gather it')) : resolve(body)));
      send({ pgbell: 'ask', id: n, what });
    });
  try {
    send({ pgbell: 'hello' });
    await welcome;
    daemon = await startDaemon({
      ...opts,
      log,
      worker: {
        source,
        machine: {
          health: () => ask('health') as Promise<{ status: string }>,
          metrics: () => ask('metrics') as Promise<string>,
        },
      },
    });
    send({ pgbell: 'ready', url: daemon.url, port: daemon.port });
    const d = daemon;
    await new Promise<void>((resolve) => {
      // The handlers stay while stopping: systemd's stop (KillMode=control-group) and Ctrl-C
      // (the terminal's process group) signal every worker as well as the primary, which then
      // signals them again; without a handler, that second signal would kill a worker mid-drain.
      let stopping = false;
      const stop = (why: string) => {
        if (stopping) return;
        stopping = true;
        log.info(`${why}; worker stopping`);
        void d.stop().finally(() => {
          process.off('SIGTERM', onTerm);
          process.off('SIGINT', onInt);
          resolve();
        });
      };
      const onTerm = () => stop('SIGTERM received');
      const onInt = () => stop('SIGINT received');
      process.on('SIGTERM', onTerm);
      process.on('SIGINT', onInt);
    });
  } finally {
    // The worker's own disconnect: the process then exits with its exit code (a failed start: 1),
    // and the primary knows it meant to.
    if (process.connected) cluster.worker!.disconnect();
  }
}
