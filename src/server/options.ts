/**
 * What the daemon hands the server: ServerOptions (the Hub, the sync, the /alerts handler, the
 * listener's state, the keys) and the Limits on what one client may cost, with their defaults.
 * Separate from server.ts so that the daemon, the config and the tests can read the server's
 * surface without the machinery behind it.
 */
import type { UnreadByType } from '../db/changes.js';
import type { Hub, Subscriber } from '../delivery/hub.js';
import type { AlertsHandler } from './alerts.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

/** What one client may cost. Defaults are in src/config.ts. */
export interface Limits {
  maxConnections: number;
  maxUnauthenticated: number;
  /** Of those, from one client address (0 = no per-address budget). */
  maxUnauthenticatedPerAddress: number;
  /** How long a handshake beyond maxUnauthenticated waits for a place (0: refused at once); see src/server/waiting.ts. */
  maxWaitMs: number;
  /** Bytes the waiting handshakes may hold in all (their headers and what they sent early). */
  maxWaitingBytes: number;
  maxPerUser: number;
  rateLimit: number;
  rateWindowMs: number;
  /** HTTP requests, event streams and new sockets one user may open per rateWindowMs (0: no limit). */
  userRateLimit: number;
  /** HTTP requests and event streams from one public client address per rateWindowMs (0: no limit). */
  addressRateLimit: number;
  maxBufferedBytes: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxConnections: 20_000,
  maxUnauthenticated: 1_000,
  maxUnauthenticatedPerAddress: 100,
  maxWaitMs: 10_000,
  maxWaitingBytes: 64 << 20,
  maxPerUser: 20,
  rateLimit: 100,
  rateWindowMs: 10_000,
  userRateLimit: 60,
  addressRateLimit: 600,
  maxBufferedBytes: 1 << 20,
};

export interface ServerOptions {
  port: number;
  /**
   * Proxies in front of the daemon whose X-Forwarded-For is trusted: the client address is the
   * entry this many from the right. 0 (default): the socket's peer address.
   */
  trustProxyHops?: number | undefined;
  /** PEM certificate and key: serve https:// and wss:// instead of http:// and ws://. */
  tls?: { cert: Buffer; key: Buffer } | undefined;
  /** Origins whose pages may open a socket; 'any' skips the check. */
  allowedOrigins: readonly string[] | 'any';
  limits: Limits;
  host?: string | undefined;
  /**
   * Connections the kernel queues before they are accepted (default 4096; Linux caps it at
   * net.core.somaxconn). Node's own default, 511, overflows in a reconnect storm: the kernel then
   * drops handshakes, and TCP retries them only after 1, 3, 7… s.
   */
  listenBacklog?: number | undefined;
  /**
   * Connections the process accepts at all (the open-file limit less what the daemon needs of
   * its own, src/util/fdlimit.ts); beyond it Node closes a connection as it accepts it. Above
   * MAX_CONNECTIONS, so that up to there a socket gets 1013, and a burst beyond it never takes
   * the files the daemon's own Postgres connections need.
   */
  acceptLimit?: number | undefined;
  heartbeatMs: number;
  authTimeoutMs: number;
  /** Keys that verify session tokens (the current one first, then previous ones). */
  keys: readonly Uint8Array[];
  /** Clock skew allowed on `exp`. */
  leewaySeconds: number;
  /** `token_expiring` is sent this long before `exp`. */
  expiringSeconds: number;
  /** Latest revocation of a user (epoch seconds), if any: tokens issued before it are refused. */
  revokedBefore: (userId: string) => Promise<number | null>;
  hub: Hub;
  /**
   * Starts a new subscriber's sync: it sends `ready`, what was missed, then `synced`. Rejects
   * when this node cannot serve it now (Redis fan-out could not subscribe it): the socket is
   * closed with 1013 `node_unavailable`.
   */
  subscribe: (sub: Subscriber) => Promise<void>;
  /** A subscriber's socket closed. */
  unsubscribe?: (sub: Subscriber) => void;
  /** A user's counts by type, for `subscribed`. */
  counts: (userId: string) => Promise<UnreadByType>;
  /** Marks alerts read for a user; the change then streams back like any UPDATE. */
  markRead: (userId: string, which: { ids: string[] } | { all: true }) => Promise<number>;
  /** GET /alerts, POST /alerts/read, /seen, /archive, /unarchive. */
  alerts: AlertsHandler;
  /** GET /metrics. */
  metrics?: Metrics | undefined;
  /** When set, /metrics and /health's details need it as a bearer token. */
  adminToken?: string | undefined;
  log: Logger;
  /** Listener status for /health; `connected` with a passing probe is what makes the daemon healthy. */
  listenerStatus: () => { state: string; probe?: { ok: boolean | null } } & Record<string, unknown>;
  /** pg_notification_queue_usage() as last measured (0–1), for /health. */
  queueUsage: () => number | null;
  /**
   * A worker of `pgbell start --workers N` (src/daemon/workers.ts): /health's details and
   * /metrics are the whole machine's, gathered from every worker. Unset: this process's.
   */
  machine?: { health(): Promise<{ status: string; [k: string]: unknown }>; metrics(): Promise<string> } | undefined;
}
