/**
 * What a daemon is started with: every option startDaemon takes, with its default, and how
 * `pgbell start` (and dev) turns validated config into them. Separate from daemon.ts, which
 * wires the pieces: this is the daemon's surface, read by whoever starts one (the CLI, the
 * tests, the package's users).
 */
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Limits } from '../server/server.js';
import type { ChangeSource, Mode } from '../sources/index.js';

export interface DaemonOptions {
  databaseUrl: string;
  /** Guards /metrics and /health's details (see ADMIN_TOKEN); unset: public. */
  adminToken?: string | undefined;
  /** 'poll': no LISTEN; new changes are read every pollMs (the triggers must have been migrated for it). */
  mode?: Mode;
  /** Poll mode's interval (default 100 ms). */
  pollMs?: number;
  /** 'redis': one relay LISTENs and publishes per user to Redis; nodes subscribe for their users. */
  fanout?: 'listen' | 'redis';
  redisUrl?: string | undefined;
  /** A Redis Cluster instead of redisUrl: some of its nodes' URLs. */
  redisClusterNodes?: string[] | undefined;
  /** Where the listener connects, if not DATABASE_URL (must be a direct session connection to the primary). */
  listenDatabaseUrl?: string | undefined;
  sessionSecret: string;
  /** Earlier secrets that still verify tokens (key rotation). */
  previousSecrets?: readonly string[];
  /** Clock skew allowed on token expiry (default 30 s). */
  tokenLeewaySeconds?: number;
  /** PEM files: serve https:// and wss:// directly. */
  tls?: { certFile: string; keyFile: string } | undefined;
  /** `token_expiring` this long before expiry (default 60 s). */
  tokenExpiringSeconds?: number;
  port: number;
  host?: string | undefined;
  /** Connections the kernel queues before they are accepted (LISTEN_BACKLOG; default 4096). */
  listenBacklog?: number;
  /** How long a rolling restart waits for a new worker to serve (WORKER_START_MS; default 60 s). */
  workerStartMs?: number;
  heartbeatMs: number;
  authTimeoutMs: number;
  channel: string;
  /** Origins allowed to call /alerts from a browser. */
  allowedOrigins?: readonly string[];
  /** The alert types a user may mute (ALERT_TYPES); unset: any. */
  alertTypes?: readonly string[];
  /** Most changes replayed to one user on resume before a reset instead. */
  maxReplay?: number;
  /** Deletes older than this are pruned; older cursors get a reset. */
  tombstoneRetentionHours?: number;
  /** Origins whose pages may open a socket; 'any' (or unset) skips the check. */
  socketOrigins?: readonly string[] | 'any';
  limits?: Partial<Limits>;
  /** Users per catch-up read (tests use a small number to see the batching). */
  syncBatchUsers?: number;
  /** Above this many connected users, live reads are not filtered by user (tests use a small number). */
  liveFilterMaxUsers?: number;
  /** Bytes of rows the recent-transaction memory keeps (default RECENT_MAX_BYTES in src/delivery/recent.ts; tests use less). */
  recentMaxBytes?: number;
  /** WAL mode: bytes of rows a streaming transaction may hold before it is read by id (default CARRY_MAX_BYTES in src/sources/walrows.ts; tests use less). */
  walCarryMaxBytes?: number;
  /** Proxies whose X-Forwarded-For is trusted (the per-address unauthenticated budget). */
  trustProxyHops?: number | undefined;
  /** Redis mode: how often a standby tries to become the relay, and rows per catch-up page (tests). */
  relay?: { retryMs?: number; pageRows?: number };
  /** Redis mode: how long a socket waits for its SSUBSCRIBE, and how long Redis may be unreachable before sockets are closed (tests; see src/fanout/redistimeouts.ts). */
  redisTimeouts?: { subscribeMs?: number; unreachableMs?: number };
  log?: Logger;
  logLevel?: string;
  /** How often the info summary line is logged (default 60 s; tests use less). */
  summaryMs?: number;
  /**
   * This daemon is one worker of `pgbell start --workers N` (src/daemon/workers.ts): `source` is
   * the primary's, forwarded (absent in Redis fan-out mode: the worker is a node of its own);
   * `machine` answers /health's details and /metrics for the whole machine. The primary prunes
   * tombstones, so a worker does not.
   */
  worker?: { source?: ChangeSource | undefined; machine: { health(): Promise<{ status: string; [k: string]: unknown }>; metrics(): Promise<string> } } | undefined;
}

/** Daemon options from validated config; the connection and secret come from the caller (dev may supply its own). */
export function daemonOptions(config: Config, conn: { databaseUrl: string; sessionSecret: string; log: Logger }): DaemonOptions {
  return {
    ...conn,
    port: config.PORT,
    host: config.HOST,
    listenBacklog: config.LISTEN_BACKLOG,
    workerStartMs: config.WORKER_START_MS,
    heartbeatMs: config.HEARTBEAT_MS,
    authTimeoutMs: config.AUTH_TIMEOUT_MS,
    channel: config.PGBELL_CHANNEL,
    allowedOrigins: config.ALLOWED_ORIGINS,
    alertTypes: config.ALERT_TYPES,
    previousSecrets: config.SESSION_SECRET_PREVIOUS,
    listenDatabaseUrl: config.LISTEN_DATABASE_URL,
    fanout: config.PGBELL_FANOUT,
    mode: config.PGBELL_MODE,
    pollMs: config.PGBELL_POLL_MS,
    redisUrl: config.REDIS_URL,
    redisClusterNodes: config.REDIS_CLUSTER_NODES,
    tls: config.TLS_CERT && config.TLS_KEY ? { certFile: config.TLS_CERT, keyFile: config.TLS_KEY } : undefined,
    tokenLeewaySeconds: config.TOKEN_LEEWAY_SECONDS,
    trustProxyHops: config.TRUST_PROXY_HOPS,
    adminToken: config.ADMIN_TOKEN,
    tokenExpiringSeconds: config.TOKEN_EXPIRING_SECONDS,
    maxReplay: config.MAX_REPLAY,
    tombstoneRetentionHours: config.TOMBSTONE_RETENTION_HOURS,
    socketOrigins: config.ALLOWED_ORIGINS.length > 0 ? config.ALLOWED_ORIGINS : 'any',
    limits: {
      maxConnections: config.MAX_CONNECTIONS,
      maxUnauthenticated: config.MAX_UNAUTHENTICATED,
      maxUnauthenticatedPerAddress: config.MAX_UNAUTHENTICATED_PER_ADDRESS,
      maxWaitMs: config.MAX_HANDSHAKE_WAIT_MS,
      maxWaitingBytes: config.MAX_WAITING_BYTES,
      maxPerUser: config.MAX_CONNECTIONS_PER_USER,
      rateLimit: config.RATE_LIMIT,
      rateWindowMs: config.RATE_WINDOW_MS,
      userRateLimit: config.USER_RATE_LIMIT,
      addressRateLimit: config.ADDRESS_RATE_LIMIT,
      maxBufferedBytes: config.MAX_BUFFERED_BYTES,
    },
  };
}
