/**
 * Wires the pieces: listener (txids) → row reads → hub (fan-out) ← server (sockets).
 * One daemon per process; `startDaemon` is what `pgbell start` and the tests call.
 */
import { sql } from 'kysely';
import { secretKey } from './auth.js';
import type { Config } from './config.js';
import { createDb, type Db } from './db/connect.js';
import { triggerChannel } from './db/migrate.js';
import { Delivery } from './delivery.js';
import { Hub } from './hub.js';
import { Listener } from './listener.js';
import { createLogger, type Logger } from './log.js';
import { Server } from './server.js';

export interface DaemonOptions {
  databaseUrl: string;
  sessionSecret: string;
  port: number;
  host?: string | undefined;
  heartbeatMs: number;
  authTimeoutMs: number;
  channel: string;
  log?: Logger;
  logLevel?: string;
}

export interface Daemon {
  port: number;
  /** ws://host:port/ */
  url: string;
  hub: Hub;
  listener: Listener;
  stop(): Promise<void>;
}

/** Daemon options from validated config; the connection and secret come from the caller (dev may supply its own). */
export function daemonOptions(config: Config, conn: { databaseUrl: string; sessionSecret: string; log: Logger }): DaemonOptions {
  return {
    ...conn,
    port: config.PORT,
    host: config.HOST,
    heartbeatMs: config.HEARTBEAT_MS,
    authTimeoutMs: config.AUTH_TIMEOUT_MS,
    channel: config.PGBELL_CHANNEL,
  };
}

export class StartupError extends Error {
  override name = 'StartupError';
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const log = opts.log ?? createLogger(opts.logLevel ?? 'info');
  const db = createDb(opts.databaseUrl);
  try {
    await checkDatabase(db, opts.channel);
  } catch (err) {
    await db.destroy();
    throw err;
  }

  const hub = new Hub(log);
  const listener = new Listener({ connectionString: opts.databaseUrl, channel: opts.channel, log, checkIntervalMs: opts.heartbeatMs });
  const delivery = new Delivery(db, hub, log);
  listener.on('txid', (txid) => delivery.enqueue(txid));

  const server = new Server({
    port: opts.port,
    host: opts.host,
    heartbeatMs: opts.heartbeatMs,
    authTimeoutMs: opts.authTimeoutMs,
    key: secretKey(opts.sessionSecret),
    hub,
    log,
    listenerStatus: () => listener.status(),
  });

  try {
    await listener.start();
    const address = await server.listen();
    const host = address.family === 'IPv6' ? (address.address === '::' ? 'localhost' : `[${address.address}]`) : address.address === '0.0.0.0' ? 'localhost' : address.address;
    const url = `ws://${host}:${address.port}/`;
    log.info({ port: address.port, channel: opts.channel }, `pgbell listening on ${url} (channel ${opts.channel})`);
    let stopped: Promise<void> | undefined;
    return {
      port: address.port,
      url,
      hub,
      listener,
      stop: () =>
        (stopped ??= (async () => {
          await server.close();
          await listener.close();
          await delivery.drain();
          await db.destroy();
          log.info('pgbell stopped');
        })()),
    };
  } catch (err) {
    await listener.close();
    await server.close().catch(() => {});
    await db.destroy();
    throw err;
  }
}

/** Resolves once SIGTERM/SIGINT has stopped the daemon (sockets closed with 1001). */
export function untilSignal(daemon: Daemon, log: { info(msg: string): void }): Promise<void> {
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

/** Fails early, saying what to do, when the database is unreachable or not migrated. */
async function checkDatabase(db: Db, channel: string): Promise<void> {
  try {
    await sql`SELECT 1`.execute(db);
  } catch (err) {
    throw new StartupError(`cannot connect to DATABASE_URL: ${(err as Error).message}`);
  }
  const current = await triggerChannel((text) => sql.raw(text).execute(db));
  if (current === null) throw new StartupError('the "Alert" table or its notify trigger is missing: run `pgbell migrate` first');
  if (current !== channel) {
    throw new StartupError(`the "Alert" trigger notifies channel "${current}" but PGBELL_CHANNEL is "${channel}": run \`pgbell migrate\` with the same PGBELL_CHANNEL`);
  }
}
