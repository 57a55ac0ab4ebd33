/**
 * Wires the pieces: listener (txids) → delivery (reads, cursors) → hub (fan-out) ← server
 * (sockets, /alerts).
 * One daemon per process; `startDaemon` is what `pgbell start` and the tests call.
 */
import { readFile } from 'node:fs/promises';
import { sql } from 'kysely';
import { secretKey } from '../auth.js';
import { currentEpoch, databaseId, markRead, pruneTombstones, unreadCounts } from '../db/changes.js';
import { createDb } from '../db/connect.js';
import { revokedBefore } from '../db/users.js';
import { Revocations } from '../sources/revocations.js';
import { renormalizeForeignTxids, RestampError } from '../db/bookkeeping.js';
import { withSchemaLock } from '../db/lock.js';
import { Delivery } from '../delivery/delivery.js';
import { alertsHandler } from '../server/alerts.js';
import { Hub, type Subscriber } from '../delivery/hub.js';
import { Relay } from '../fanout/relay.js';
import { RedisFanout } from '../fanout/redis.js';
import { createSource, type ChangeSource } from '../sources/index.js';
import { Metrics } from '../metrics.js';
import { startSummary } from './summary.js';
import { createLogger } from '../log.js';
import { DEFAULT_LIMITS, Server } from '../server/server.js';
import { acceptAllowed, openFileLimit, socketsAllowed } from '../util/fdlimit.js';
import { checkDatabase, checkListenDatabase, StartupError } from './checks.js';
import type { DaemonOptions } from './options.js';

// Where the CLI, the package's index and the tests import them from.
export { daemonOptions, type DaemonOptions } from './options.js';
export { StartupError } from './checks.js';

export interface Daemon {
  port: number;
  /** ws://host:port/ */
  url: string;
  hub: Hub;
  listener: ChangeSource;
  /** What /health says of this process (see Server.health). */
  health(): ReturnType<Server['health']>;
  metrics: Metrics;
  stop(): Promise<void>;
}

/** How long a stopping daemon waits for deliveries in flight before closing sockets. */
const DRAIN_MS = 5000;

/** Connections of the /alerts read side (apart from the 5 of delivery). */
const READ_POOL = 3;

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const log = opts.log ?? createLogger(opts.logLevel ?? 'info');
  const db = createDb(opts.databaseUrl);
  const readDb = createDb(opts.databaseUrl, { applicationName: 'pgbell-read', max: READ_POOL });
  let dbId: string;
  let epoch: string;
  try {
    await checkDatabase(db, (opts.mode ?? 'notify') === 'notify' ? opts.channel : '', opts.mode ?? 'notify');
    // A database restored from another cluster carries transaction ids this server has not
    // handed out: a cursor that took one would skip the real transaction given it later.
    // Given up (writers kept changing those rows): the daemon runs all the same, as it would
    // have before the check existed; no cursor takes an id at or above a read's xmax anyway.
    const restamped = await withSchemaLock(opts.databaseUrl, 'pgbell-start', (client) => renormalizeForeignTxids(client)).catch((err: unknown) => {
      if (!(err instanceof RestampError)) throw err;
      log.error(err.message);
      return 0;
    });
    if (restamped > 0) log.warn({ rows: restamped }, `re-stamped ${restamped} bookkeeping rows whose transaction ids this server has not handed out yet (restored from another cluster?)`);
    dbId = await databaseId(db);
    epoch = await currentEpoch(db);
  } catch (err) {
    await db.destroy();
    await readDb.destroy();
    throw err;
  }

  let tls: { cert: Buffer; key: Buffer } | undefined;
  if (opts.tls) {
    try {
      tls = { cert: await readFile(opts.tls.certFile), key: await readFile(opts.tls.keyFile) };
    } catch (err) {
      await db.destroy();
      await readDb.destroy();
      throw new StartupError(`cannot read TLS_CERT/TLS_KEY: ${(err as Error).message}`);
    }
  }

  const maxReplay = opts.maxReplay ?? 10_000;
  const key = secretKey(opts.sessionSecret);
  const keys = [key, ...(opts.previousSecrets ?? []).map(secretKey)];
  const hub = new Hub();
  const listenUrl = opts.listenDatabaseUrl ?? opts.databaseUrl;
  const mode = opts.mode ?? 'notify';
  // Where committed changes are heard of (see src/sources/index.ts).
  const listener =
    opts.worker?.source ?? createSource({ mode, db, listenUrl, channel: opts.channel, pollMs: opts.pollMs ?? 100, checkIntervalMs: opts.heartbeatMs, walCarryMaxBytes: opts.walCarryMaxBytes, log });
  let queueUsage: number | null = null;
  let pendingAuth = () => 0;
  const metrics = new Metrics({
    connections: () => hub.connections,
    users: () => hub.users,
    pendingAuth: () => pendingAuth(),
    listenerReconnects: () => listener.status().reconnects,
    queueUsage: () => queueUsage,
    recentBytes: (): number => delivery.recentBytes,
  });
  const delivery = new Delivery({ db, hub, log, epoch, maxReplay, syncBatchUsers: opts.syncBatchUsers, liveFilterMaxUsers: opts.liveFilterMaxUsers, recentMaxBytes: opts.recentMaxBytes, metrics });
  listener.on('txid', (txid, xmin, carried, counted) => delivery.enqueue(txid, xmin, carried, counted));
  // Revocations are read from pgbell_revocation, never taken from a message: a payload (any
  // role can send one) only names a user to check, and after a gap (listener, Redis, relay
  // takeover) every user with a socket here is checked.
  const checkRevocations = (userIds: string[], why: string) =>
    void revokedBefore(db, userIds).then(
      (found) => {
        revocations?.record(found);
        found.forEach((before, userId) => server.revoke(userId, before));
      },
      (err) => log.warn({ err: (err as Error).message }, `checking revocations ${why} failed`),
    );
  const recheckRevocations = (why: string) => checkRevocations(server.userIds(), why);
  listener.on('resumed', () => {
    delivery.catchUp();
    recheckRevocations('after the listener reconnected');
    void revocations?.reload();
  });
  listener.on('horizon', (xmin) => delivery.horizon(xmin));
  listener.on('revoke', (userId) => checkRevocations([userId], 'for a revocation notice'));

  // Redis fan-out: this node's own listener stays off; the relay (whichever node holds its lock)
  // LISTENs for everyone, and this node subscribes for the users whose sockets it holds.
  const redisMode = opts.fanout === 'redis';
  // Authentication reads revocations from memory while this daemon's own source of hints is
  // connected (see src/sources/revocations.ts). In Redis fan-out, hints come from the relay through
  // Redis, and a relay's death can drop some: each authentication reads the table.
  const revocations = redisMode ? null : new Revocations(db, log, listener);
  const fanout = redisMode
    ? new RedisFanout({
        url: opts.redisUrl,
        clusterNodes: opts.redisClusterNodes,
        channel: opts.channel,
        log,
        onChanges: (txid, xmin, batch, epoch) => delivery.deliverRead(txid, xmin, batch, epoch),
        onRevoke: (userId) => checkRevocations([userId], 'for a revocation notice'),
        onResumed: () => {
          delivery.catchUp();
          recheckRevocations('after Redis reconnected');
        },
        // Sockets held without Redis get nothing live and are told nothing: closed (1013), their
        // clients poll meanwhile and reconnect, to a node that reaches Redis if there is one.
        onUnreachable: (forMs) => {
          const n = server.closeAll('node_unavailable');
          if (n > 0) log.warn({ sockets: n, forMs: Math.round(forMs) }, `closed ${n} sockets with 1013: Redis unreachable for ${Math.round(forMs / 1000)} s`);
        },
        subscribeTimeoutMs: opts.redisTimeouts?.subscribeMs,
        unreachableMs: opts.redisTimeouts?.unreachableMs,
        databaseId: dbId,
      })
    : null;
  /** Redis mode: the subscribers that hold a watch of their user (see RedisFanout.watch). */
  const watching = new WeakSet<Subscriber>();
  const relay = fanout
    ? new Relay({ mode, databaseUrl: opts.databaseUrl, listenUrl: opts.listenDatabaseUrl ?? opts.databaseUrl, channel: opts.channel, db, fanout, log, heartbeatMs: opts.heartbeatMs, ...opts.relay })
    : null;

  const retentionHours = opts.tombstoneRetentionHours ?? 168;
  const prune = () =>
    pruneTombstones(db, retentionHours).then(
      (n) => n > 0 && log.info({ pruned: n }, `pruned ${n} tombstones older than ${retentionHours} h`),
      (err) => log.warn({ err: (err as Error).message }, 'pruning tombstones failed; will retry'),
    );
  // A worker fed by its primary's source leaves pruning to the primary, once for the machine.
  // In Redis fan-out mode the primary holds no database: each worker prunes (deletes of old
  // tombstones, so running them side by side is harmless).
  const prunes = !opts.worker?.source;
  if (prunes) void prune();
  const pruneTimer = setInterval(() => prunes && void prune(), 3600_000).unref();

  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const files = openFileLimit();
  const allowed = socketsAllowed(files);
  if (allowed !== null && limits.maxConnections > allowed) {
    log.warn(
      { maxConnections: limits.maxConnections, openFileLimit: files, serving: allowed },
      `MAX_CONNECTIONS (${limits.maxConnections}) is more than this process's open-file limit (${files}) can hold: at most ${allowed} sockets, the rest refused with 1013; raise the limit (ulimit -n, LimitNOFILE=) to hold more`,
    );
    limits.maxConnections = allowed;
  }
  const acceptLimit = acceptAllowed(files) ?? undefined;

  const server = new Server({
    tls,
    port: opts.port,
    trustProxyHops: opts.trustProxyHops,
    host: opts.host,
    listenBacklog: opts.listenBacklog,
    acceptLimit,
    heartbeatMs: opts.heartbeatMs,
    authTimeoutMs: opts.authTimeoutMs,
    keys,
    leewaySeconds: opts.tokenLeewaySeconds ?? 30,
    expiringSeconds: opts.tokenExpiringSeconds ?? 60,
    revokedBefore: async (userId) => (revocations ? revocations.before(userId) : (await revokedBefore(db, [userId])).get(userId) ?? null),
    hub,
    allowedOrigins: opts.socketOrigins ?? 'any',
    limits,
    // In Redis mode the subscription is confirmed before the socket's first read, so nothing
    // published in between is missed.
    subscribe: async (sub) => {
      if (fanout) {
        watching.add(sub);
        try {
          await fanout.watch(sub.userId);
        } catch (err) {
          // A failed watch is forgotten by the fan-out: this socket holds none to give back.
          watching.delete(sub);
          throw err;
        }
      }
      return delivery.subscribe(sub);
    },
    unsubscribe: (sub) => {
      if (watching.delete(sub)) fanout?.unwatch(sub.userId);
    },
    markRead: (userId, which) => markRead(db, userId, which),
    counts: (userId) => unreadCounts(db, userId),
    // The read side has connections of its own: no client traffic on /alerts can hold the ones
    // live delivery and syncs use.
    alerts: alertsHandler({
      db: readDb,
      key: keys,
      allowedOrigins: opts.allowedOrigins ?? [],
      alertTypes: opts.alertTypes ?? [],
      maxReplay,
      leewaySeconds: opts.tokenLeewaySeconds ?? 30,
      admit: (userId): number | null => server.admitUser(userId),
      onError: (err) => log.warn({ err: err.message }, `GET/POST /alerts answered 503: ${err.message}`),
    }),
    log,
    listenerStatus: () =>
      fanout
        ? { state: fanout.ready ? 'connected' : 'reconnecting', mode: 'redis', relay: relay!.isRelay, channel: opts.channel, ...(relay!.probeStatus && { probe: relay!.probeStatus }) }
        : listener.status(),
    queueUsage: () => queueUsage,
    metrics,
    adminToken: opts.adminToken,
    machine: opts.worker?.machine,
  });
  pendingAuth = () => server.pendingAuth;

  let checking = false;
  /** The probe, and the queue usage while at it; warns above half full (writers fail when it is full). */
  const check = async () => {
    if (checking) return;
    checking = true;
    try {
      const timeoutMs = Math.min(5000, Math.max(250, opts.heartbeatMs));
      if (!fanout) {
        await listener.probe(timeoutMs);
        // Revocations written without a hint (triggers off) are found within a heartbeat.
        await revocations?.reload();
      } else {
        // The relay's LISTEN is the fleet's only one: probe it like a node's own.
        await relay!.probe(timeoutMs);
        // A revocation published while this node's Redis or the relay was away is not
        // re-sent; the table is checked once per heartbeat instead.
        recheckRevocations('in Redis mode');
      }
      const { rows } = await sql<{ u: number }>`SELECT pg_notification_queue_usage() AS u`.execute(db);
      const wasHigh = (queueUsage ?? 0) > 0.5;
      queueUsage = Number(rows[0]!.u);
      if (queueUsage > 0.5 && !wasHigh) log.warn({ notifyQueueUsage: queueUsage }, `the NOTIFY queue is ${(queueUsage * 100).toFixed(0)}% full: a listener somewhere is not reading; writers fail when it is full`);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'measuring the NOTIFY queue failed');
    } finally {
      checking = false;
    }
  };
  let checkTimer: NodeJS.Timeout | undefined;
  let stopSummary = () => {};

  try {
    // WAL mode's stream reports its own refusals (a replica, a pooler) and keeps trying.
    if (mode === 'notify' && !opts.worker?.source) await checkListenDatabase(listenUrl, opts.listenDatabaseUrl ? 'LISTEN_DATABASE_URL' : 'DATABASE_URL');
    if (fanout) {
      try {
        await fanout.start();
      } catch (err) {
        throw new StartupError(`cannot connect to ${opts.redisClusterNodes ? 'the Redis Cluster at REDIS_CLUSTER_NODES' : 'REDIS_URL'}: ${(err as Error).message}`);
      }
      relay!.start();
    } else await listener.start();
    if (!fanout && mode === 'notify' && !(await listener.probe(5000))) {
      throw new StartupError(
        'LISTEN does not receive notifications sent to the database: the listener\'s connection goes through a transaction-mode pooler (e.g. PgBouncer) or to another server or database than DATABASE_URL. Point LISTEN_DATABASE_URL at a direct session connection to the primary',
      );
    }
    await check();
    checkTimer = setInterval(() => void check(), opts.heartbeatMs);
    checkTimer.unref();
    stopSummary = startSummary({ log, tally: metrics.tally, intervalMs: opts.summaryMs ?? 60_000, connections: () => hub.connections, users: () => hub.users });
    const address = await server.listen();
    const host = address.family === 'IPv6' ? (address.address === '::' ? 'localhost' : `[${address.address}]`) : address.address === '0.0.0.0' ? 'localhost' : address.address;
    const url = `${tls ? 'wss' : 'ws'}://${host}:${address.port}/`;
    const source = mode === 'poll' ? `poll mode, every ${opts.pollMs ?? 100} ms` : mode === 'wal' ? 'WAL mode, streaming publication pgbell' : `channel ${opts.channel}`;
    log.info({ port: address.port, channel: opts.channel, mode: opts.mode ?? 'notify' }, `pgbell listening on ${url} (${source})`);
    if ((opts.socketOrigins ?? 'any') === 'any') log.warn('ALLOWED_ORIGINS is not set: WebSocket handshakes from any web origin are accepted (a token is still required)');
    let stopped: Promise<void> | undefined;
    return {
      port: address.port,
      url,
      hub,
      listener,
      health: () => server.health(),
      metrics,
      stop: () =>
        (stopped ??= (async () => {
          clearInterval(pruneTimer);
          clearInterval(checkTimer);
          stopSummary();
          // Graceful under load: take no new sockets and no new notifications, let the reads in
          // flight reach their sockets (bounded), then close them with 1001. Whatever a client
          // did not get, it gets by resuming from its cursor on another node.
          server.stopAccepting();
          await relay?.close();
          await listener.close();
          await Promise.race([delivery.drain(), new Promise((r) => setTimeout(r, DRAIN_MS).unref())]);
          await server.close();
          await delivery.abandon();
          await fanout?.close();
          await db.destroy();
          await readDb.destroy();
          log.info('pgbell stopped');
        })()),
    };
  } catch (err) {
    clearInterval(pruneTimer);
    clearInterval(checkTimer);
    await delivery.abandon();
    await relay?.close();
    await fanout?.close();
    await listener.close();
    await server.close().catch(() => {});
    await db.destroy();
    await readDb.destroy();
    throw err;
  }
}

/** Resolves once SIGTERM/SIGINT has stopped the daemon (sockets closed with 1001). */
export function untilSignal(daemon: Pick<Daemon, 'stop'>, log: { info(msg: string): void }): Promise<void> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      log.info(`${signal} received; shutting down`);
      void daemon.stop().finally(resolve);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
