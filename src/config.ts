/**
 * The only module that reads process.env. Every setting is validated here, once, and the
 * result is frozen; a bad value fails with one line naming the variable.
 */
import { z } from 'zod';

/** Default NOTIFY channel. sql/000002_alert_notify.sql installs the trigger with the same name. */
export const DEFAULT_CHANNEL = 'pgbell';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `must be a whole number between ${min} and ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const postgresUrl = z
  .string()
  .trim()
  .refine((v) => /^postgres(ql)?:\/\//.test(v), 'must be a postgres:// or postgresql:// URL');

const schema = z.object({
  DATABASE_URL: postgresUrl.optional(),
  LISTEN_DATABASE_URL: postgresUrl.optional(),
  PGBELL_FANOUT: z.enum(['listen', 'redis'], 'must be listen (every node LISTENs) or redis (one relay LISTENs, Redis spreads)').default('listen'),
  PGBELL_MODE: z
    .enum(['notify', 'poll', 'wal'], 'must be notify (the trigger sends NOTIFY), poll (the daemon reads new changes every PGBELL_POLL_MS) or wal (the daemon streams committed changes by logical replication)')
    .default('notify'),
  PGBELL_POLL_MS: int(10, 60_000).default(100),
  PGBELL_WORKERS: z
    .string()
    .trim()
    .regex(/^(auto|\d+)$/, 'must be a whole number between 1 and 256, or auto (one per core)')
    .transform((v) => (v === 'auto' ? ('auto' as const) : Number(v)))
    .refine((v) => v === 'auto' || (v >= 1 && v <= 256), 'must be a whole number between 1 and 256, or auto (one per core)')
    .default(1),
  REDIS_URL: z.string().trim().refine((v) => /^rediss?:\/\//.test(v), 'must be a redis:// or rediss:// URL').optional(),
  REDIS_CLUSTER_NODES: z
    .string()
    .trim()
    .transform((v) => v.split(',').map((u) => u.trim()).filter((u) => u !== ''))
    .refine((urls) => urls.length > 0 && urls.every((u) => /^rediss?:\/\/[^/]+/.test(u)), 'must be a comma-separated list of redis:// or rediss:// URLs of cluster nodes')
    .optional(),
  SESSION_SECRET: z
    .string()
    .min(32, 'must be at least 32 characters (it is the HS256 key that signs session tokens)')
    .optional(),
  SESSION_SECRET_PREVIOUS: z
    .string()
    .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .pipe(z.array(z.string().min(32, 'each previous secret must be at least 32 characters')))
    .default([]),
  TOKEN_LEEWAY_SECONDS: int(0, 3600).default(30),
  TOKEN_EXPIRING_SECONDS: int(1, 86_400).default(60),
  PORT: int(0, 65535).default(8080),
  HOST: z.string().trim().min(1).optional(),
  DEMO_PORT: int(0, 65535).default(3007),
  TLS_CERT: z.string().trim().min(1).optional(),
  TLS_KEY: z.string().trim().min(1).optional(),
  HEARTBEAT_MS: int(100, 3_600_000).default(30_000),
  AUTH_TIMEOUT_MS: int(50, 600_000).default(5_000),
  PGBELL_CHANNEL: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lowercase Postgres identifier ([a-z_][a-z0-9_]*, at most 63 characters)')
    .default(DEFAULT_CHANNEL),
  ALERT_TYPES: z
    .string()
    .transform((v) => v.split(',').map((t) => t.trim()).filter(Boolean))
    .pipe(z.array(z.string().max(100, 'a type is longer than 100 characters')))
    .default([]),
  ALLOWED_ORIGINS: z
    .string()
    .transform((v) => v.split(',').map((o) => o.trim()).filter(Boolean))
    .pipe(
      z.array(
        z.string().refine((o) => o === '*' || /^https?:\/\/[^/\s]+$/.test(o), 'must be comma-separated origins like https://app.example.com (scheme://host[:port], no path) or *'),
      ),
    )
    .default([]),
  MAX_REPLAY: int(1, 1_000_000).default(10_000),
  MAX_CONNECTIONS: int(1, 1_000_000).default(20_000),
  MAX_UNAUTHENTICATED: int(1, 1_000_000).default(1_000),
  MAX_UNAUTHENTICATED_PER_ADDRESS: int(0, 1_000_000).default(100),
  MAX_HANDSHAKE_WAIT_MS: int(0, 600_000).default(10_000),
  LISTEN_BACKLOG: int(1, 65_535).default(4096),
  WORKER_START_MS: int(1000, 3_600_000).default(60_000),
  MAX_WAITING_BYTES: int(65_536, 1 << 30).default(64 << 20),
  TRUST_PROXY_HOPS: int(0, 10).default(0),
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters (it guards /metrics and /health\'s details)').optional(),
  MAX_CONNECTIONS_PER_USER: int(1, 10_000).default(20),
  RATE_LIMIT: int(1, 1_000_000).default(100),
  RATE_WINDOW_MS: int(100, 3_600_000).default(10_000),
  USER_RATE_LIMIT: int(0, 1_000_000).default(60),
  ADDRESS_RATE_LIMIT: int(0, 1_000_000).default(600),
  MAX_BUFFERED_BYTES: int(1024, 1 << 30).default(1 << 20),
  TOMBSTONE_RETENTION_HOURS: int(1, 87_600).default(168),
  // No default here: `start` defaults to info, `dev` to debug (a person is reading).
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(),
  LOG_FORMAT: z.enum(['pretty', 'json'], 'must be pretty (human lines) or json (one JSON object per line)').optional(),
});

export type Config = Readonly<z.infer<typeof schema>>;

/** Every variable pgbell reads. */
export const CONFIG_KEYS: readonly string[] = Object.keys(schema.shape);

/** The variables pgbell reads, for `pgbell --help` and the README. */
export const ENV_HELP: ReadonlyArray<[name: string, help: string]> = [
  ['DATABASE_URL', 'Postgres connection URL (required for start/migrate/send; `dev` starts embedded Postgres without it)'],
  ['LISTEN_DATABASE_URL', 'where the listener connects, if not DATABASE_URL: a direct session connection to the primary (not a transaction pooler, not a replica)'],
  ['PGBELL_FANOUT', 'listen (default: every node LISTENs) or redis (one relay LISTENs and publishes to Redis; needs REDIS_URL or REDIS_CLUSTER_NODES)'],
  ['PGBELL_MODE', 'notify (default: the trigger sends NOTIFY), poll (no NOTIFY; the daemon reads new changes every PGBELL_POLL_MS) or wal (no NOTIFY; the daemon streams committed changes by logical replication: needs wal_level=logical and a role with REPLICATION); set it for `pgbell migrate`/`install` too'],
  ['PGBELL_POLL_MS', 'poll mode: how often to read new changes, in ms (default 100)'],
  ['PGBELL_WORKERS', '`start` only: worker processes serving PORT, or auto (one per core); the database is still read by one process (default 1: one process, no workers; `--workers` sets it too)'],
  ['REDIS_URL', 'Redis for PGBELL_FANOUT=redis, e.g. redis://127.0.0.1:6379'],
  ['REDIS_CLUSTER_NODES', 'a Redis Cluster for PGBELL_FANOUT=redis instead of REDIS_URL: comma-separated redis:// URLs of some of its nodes (the rest are discovered)'],
  ['SESSION_SECRET', 'HS256 key for session tokens, >= 32 chars (required for start/token; `dev` generates one)'],
  ['SESSION_SECRET_PREVIOUS', 'comma-separated earlier secrets that still verify tokens (key rotation; default none)'],
  ['TOKEN_LEEWAY_SECONDS', 'clock skew allowed on token expiry (default 30)'],
  ['TOKEN_EXPIRING_SECONDS', 'how long before expiry an open socket gets {"type":"token_expiring"} (default 60)'],
  ['PORT', 'HTTP + WebSocket port (default 8080)'],
  ['HOST', 'interface to bind (default: all)'],
  ['TLS_CERT', 'PEM certificate file: serve https:// and wss:// directly (with TLS_KEY)'],
  ['TLS_KEY', 'PEM private key file for TLS_CERT'],
  ['DEMO_PORT', '`dev` only: port of the demo app with the live bell (default 3007)'],
  ['HEARTBEAT_MS', 'ping interval; a socket that misses a pong is dropped (default 30000)'],
  ['AUTH_TIMEOUT_MS', 'time allowed for the first {"type":"auth"} message (default 5000)'],
  ['PGBELL_CHANNEL', 'NOTIFY channel used by the trigger and the listener (default pgbell)'],
  ['ALERT_TYPES', 'comma-separated alert types a user may mute; a preference naming another is refused with 400 (default: any)'],
  ['ALLOWED_ORIGINS', 'comma-separated origins allowed to call /alerts from a browser (CORS), or * (default: none)'],
  ['MAX_CONNECTIONS', 'sockets per daemon; beyond it new ones are closed with 1013 (default 20000)'],
  ['MAX_UNAUTHENTICATED', 'sockets that have not authenticated yet; beyond it new ones wait for a place (MAX_HANDSHAKE_WAIT_MS), then get 1013 (default 1000)'],
  ['MAX_UNAUTHENTICATED_PER_ADDRESS', 'of those, from one client address; beyond it new ones get 1013 (default 100; 0 = off; not counted for loopback/private peers unless TRUST_PROXY_HOPS is set)'],
  ['WORKER_START_MS', '`start --workers` only: how long a rolling restart waits for a new worker to serve before it gives up, the old ones still serving (default 60000)'],
  ['LISTEN_BACKLOG', 'connections the kernel queues before pgbell accepts them; a reconnect storm beyond it is dropped and retried by TCP (default 4096; the kernel caps it at net.core.somaxconn)'],
  ['MAX_HANDSHAKE_WAIT_MS', 'how long a handshake beyond MAX_UNAUTHENTICATED waits for a place before 1013; waiting ones count toward MAX_CONNECTIONS (default 10000; 0 = refuse at once)'],
  ['MAX_WAITING_BYTES', 'bytes the waiting handshakes may hold in all (their headers and anything sent early); beyond it a new one gets 1013 and one sending more is cut (default 67108864)'],
  ['TRUST_PROXY_HOPS', 'proxies in front whose X-Forwarded-For is trusted: the client address is that many entries from the right (default 0: the peer address)'],
  ['MAX_CONNECTIONS_PER_USER', 'sockets per user; the newest beyond it is closed with 4409 (default 20)'],
  ['RATE_LIMIT', 'messages a socket may send per RATE_WINDOW_MS; beyond it: error, then close 4429 (default 100)'],
  ['ADMIN_TOKEN', 'when set, /metrics and the details of /health need "Authorization: Bearer <ADMIN_TOKEN>"; without it /health says only ok or degraded (for load balancers) and /metrics answers 401. Unset: both are public'],
  ['RATE_WINDOW_MS', 'window of RATE_LIMIT, USER_RATE_LIMIT and ADDRESS_RATE_LIMIT (default 10000)'],
  ['USER_RATE_LIMIT', 'HTTP requests to /alerts, event streams and new sockets one user may open per RATE_WINDOW_MS; beyond it: 429 or close 4429 (default 60; 0 = no limit)'],
  ['ADDRESS_RATE_LIMIT', 'HTTP requests to /alerts and event streams from one public client address per RATE_WINDOW_MS (loopback and private addresses are not counted; behind a proxy see TRUST_PROXY_HOPS); beyond it: 429 (default 600; 0 = no limit)'],
  ['MAX_BUFFERED_BYTES', 'unsent output a socket may hold before it is closed with 4008 "slow consumer" (default 1048576)'],
  ['MAX_REPLAY', 'most changes replayed to one user on resume before a {"type":"reset"} instead (default 10000)'],
  ['TOMBSTONE_RETENTION_HOURS', 'how long deletes are kept for resuming clients; older cursors get a reset (default 168)'],
  ['LOG_LEVEL', 'fatal|error|warn|info|debug|trace|silent (default info; `dev`: debug, with a line per alert and socket)'],
  ['LOG_FORMAT', 'pretty (human lines) or json (default: pretty on a terminal and under `dev`, json otherwise)'],
];

/**
 * The channel pgbell's triggers are given: PGBELL_CHANNEL, or none in poll and WAL mode (the
 * triggers then send no NOTIFY).
 */
export function triggerChannelFor(config: Pick<Config, 'PGBELL_MODE' | 'PGBELL_CHANNEL'>): string {
  return config.PGBELL_MODE === 'notify' ? config.PGBELL_CHANNEL : '';
}

/**
 * Parse settings from an environment (process.env by default). Empty strings count as unset,
 * so `PORT= pgbell start` means the default rather than an error.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const picked: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = env[key];
    if (value !== undefined && value !== '') picked[key] = value;
  }
  const parsed = schema.safeParse(picked);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = String(issue.path[0] ?? 'environment');
    const got = picked[name];
    const secret = name === 'SESSION_SECRET' || name === 'SESSION_SECRET_PREVIOUS' || name === 'DATABASE_URL' || name === 'LISTEN_DATABASE_URL' || name === 'ADMIN_TOKEN';
    const shown = got === undefined ? '' : ` (got ${JSON.stringify(secret ? redact(got) : redactUrlPasswords(got))})`;
    throw new ConfigError(`${name} ${issue.message}${shown}`);
  }
  if (parsed.data.PGBELL_FANOUT === 'redis' && parsed.data.REDIS_URL === undefined && parsed.data.REDIS_CLUSTER_NODES === undefined) {
    throw new ConfigError('REDIS_URL (one Redis) or REDIS_CLUSTER_NODES (a Redis Cluster) is required when PGBELL_FANOUT is redis');
  }
  if (parsed.data.REDIS_URL !== undefined && parsed.data.REDIS_CLUSTER_NODES !== undefined) throw new ConfigError('set REDIS_URL (one Redis) or REDIS_CLUSTER_NODES (a Redis Cluster), not both');
  if (parsed.data.PGBELL_FANOUT === 'redis' && parsed.data.PGBELL_MODE === 'poll') throw new ConfigError('PGBELL_MODE=poll works with PGBELL_FANOUT=listen only (the Redis relay LISTENs)');
  if ((parsed.data.TLS_CERT === undefined) !== (parsed.data.TLS_KEY === undefined)) {
    throw new ConfigError(`${parsed.data.TLS_CERT === undefined ? 'TLS_CERT' : 'TLS_KEY'} is required when ${parsed.data.TLS_CERT === undefined ? 'TLS_KEY' : 'TLS_CERT'} is set`);
  }
  return Object.freeze(parsed.data);
}

/** Returns a required setting or fails naming it, the command that needs it, and the ways out. */
export function need<K extends keyof Config>(config: Config, key: K, command: string): NonNullable<Config[K]> {
  const value = config[key];
  if (value === undefined || value === null) {
    // Every command but start (production) can take these from a running `pgbell dev`.
    const devToo = (key === 'DATABASE_URL' || key === 'SESSION_SECRET') && command !== 'start';
    throw new ConfigError(
      devToo
        ? `${key} is required for \`pgbell ${command}\`: set it, or run this from a checkout where \`npm start\` (pgbell dev) is running, whose database and secret are then used`
        : `${key} is required for \`pgbell ${command}\` (see \`pgbell --help\`)`,
    );
  }
  return value as NonNullable<Config[K]>;
}

/** Every `scheme://user:password@` in `text` with the password starred (REDIS_URL, REDIS_CLUSTER_NODES, logs). */
export function redactUrlPasswords(text: string): string {
  return text.replace(/(\/\/[^/@:\s,]*:)[^@\s,/]*@/g, '$1***@');
}

function redact(value: string): string {
  return value.length <= 4 ? '***' : `${value.slice(0, 2)}***(${value.length} chars)`;
}
