/** An in-process daemon on a free port, a token signer, and a log capture for assertions. */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { secretKey, signSessionToken } from '../../src/auth.js';
import { startDaemon, type Daemon, type DaemonOptions } from '../../src/daemon/daemon.js';

export const SECRET = 'test-session-secret-0123456789abcdef';

export interface LogCapture {
  lines: Array<Record<string, unknown> & { msg: string; level: number }>;
  messages(): string[];
}

export function captureLogger() {
  const capture: LogCapture = { lines: [], messages: () => capture.lines.map((l) => l.msg) };
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line) capture.lines.push(JSON.parse(line));
      cb();
    },
  });
  return { log: pino({ level: process.env.TEST_LOG_LEVEL ?? 'trace' }, stream), capture };
}

export interface TestDaemon extends Daemon {
  http: string;
  logs: LogCapture;
}

export async function startTestDaemon(databaseUrl: string, overrides: Partial<DaemonOptions> = {}): Promise<TestDaemon> {
  const { log, capture } = captureLogger();
  const daemon = await startDaemon({
    databaseUrl,
    sessionSecret: SECRET,
    port: 0,
    host: '127.0.0.1',
    heartbeatMs: 30_000,
    authTimeoutMs: 5_000,
    channel: 'pgbell',
    log,
    ...overrides,
  });
  return { ...daemon, stop: daemon.stop, http: `http://127.0.0.1:${daemon.port}`, logs: capture };
}

export async function tokenFor(userId: string, opts: { email?: string; ttlSeconds?: number; secret?: string } = {}): Promise<string> {
  return signSessionToken(secretKey(opts.secret ?? SECRET), { userId, email: opts.email ?? null, ttlSeconds: opts.ttlSeconds ?? 3600 });
}

export async function health(base: string): Promise<{ status: number; body: Record<string, any> }> {
  const res = await fetch(`${base}/health`);
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

/** Daemons a test file starts as it goes, all stopped by `stopAll()` in its afterAll. */
export function daemonFleet(databaseUrl: () => string) {
  const started: TestDaemon[] = [];
  return {
    async start(overrides: Partial<DaemonOptions> = {}): Promise<TestDaemon> {
      const d = await startTestDaemon(databaseUrl(), overrides);
      started.push(d);
      return d;
    },
    async stopAll(): Promise<void> {
      for (const d of started) await d.stop();
    },
  };
}
