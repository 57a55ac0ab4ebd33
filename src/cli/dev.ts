/**
 * `pgbell dev` (what `npm start` runs): everything needed to see a live notification on a
 * machine with nothing installed. Embedded Postgres unless DATABASE_URL is set.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { secretKey, signSessionToken } from '../auth.js';
import { triggerChannelFor, type Config } from '../config.js';
import { daemonOptions, startDaemon, untilSignal } from '../daemon/daemon.js';
import { ensureUser } from '../db/users.js';
import { createDb } from '../db/connect.js';
import { migrate } from '../db/migrate.js';
import { startDemoServer, type DemoServer } from '../demo/server.js';
import { LOCAL_ORIGINS } from '../server/origin.js';
import { devDatabasePassword, devSecret, LEGACY_DEV_PASSWORD, recordDataDir, removeDevState, STATE_DIR, stateDirOf, storeDevPassword, writeDevState } from './devstate.js';
import { serverCanUse, sharedDirFor, startEmbeddedPostgres, type EmbeddedPostgres } from './embedded.js';
import { createLogger } from '../log.js';

export const DEMO_USER = { id: 'demo-user', email: 'demo@pgbell.dev', name: 'Demo User' } as const;

/**
 * Dev listens on this machine only unless HOST says otherwise: the demo's /api/token signs a
 * token for the demo user for anyone who asks.
 */
export const DEV_HOST = '127.0.0.1';

export async function runDev(config: Config, opts: { cwd: string }): Promise<number> {
  // A person is reading: human lines (LOG_FORMAT=json to override), and the per-alert and
  // per-socket lines (debug) unless LOG_LEVEL says otherwise.
  const log = createLogger(config.LOG_LEVEL ?? 'debug', { pretty: true, format: config.LOG_FORMAT });
  const stateDir = stateDirOf(opts.cwd);
  await mkdir(stateDir, { recursive: true, mode: 0o755 });
  const host = config.HOST ?? DEV_HOST;

  let embedded: EmbeddedPostgres | undefined;
  let databaseUrl = config.DATABASE_URL;
  if (!databaseUrl) {
    // As root, Postgres runs as the `postgres` user; a checkout it cannot enter (root's 0700
    // home, a mktemp folder) keeps its data in a per-checkout folder under /var/lib/pgbell.
    const dataDir = (await serverCanUse(stateDir)) ? path.join(stateDir, 'data') : path.join(await sharedDirFor(opts.cwd), 'data');
    await recordDataDir(stateDir, dataDir);
    log.info(`starting embedded Postgres (data in ${dataDir})`);
    const pw = await devDatabasePassword(stateDir);
    // A cluster from before the password was per checkout knows the old fixed one: it starts
    // with that and is given the new one; a new cluster gets the new one from the start.
    const legacy = !pw.stored && existsSync(path.join(dataDir, 'PG_VERSION'));
    if (!pw.stored && !legacy) await storeDevPassword(pw.file, pw.password);
    embedded = await startEmbeddedPostgres({ dataDir, password: legacy ? LEGACY_DEV_PASSWORD : pw.password });
    if (legacy) {
      await rotatePassword(embedded.url, pw.password);
      await storeDevPassword(pw.file, pw.password);
      log.info('the embedded cluster\'s superuser password is now random per checkout (.pgbell/db-password)');
    }
    databaseUrl = withPassword(embedded.url, pw.password);
  }
  try {
    const generated = config.SESSION_SECRET === undefined ? await devSecret(stateDir) : undefined;
    const sessionSecret = config.SESSION_SECRET ?? generated!.secret;
    await migrate(databaseUrl, { channel: triggerChannelFor(config), publish: config.PGBELL_MODE === 'wal', log: (m) => log.info(m) });
    const db = createDb(databaseUrl, { max: 1 });
    try {
      await ensureUser(db, DEMO_USER);
    } finally {
      await db.destroy();
    }
    // Dev lets local pages (the demo app) open sockets, on top of any ALLOWED_ORIGINS.
    const daemon = await startDaemon({ ...daemonOptions(config, { databaseUrl, sessionSecret, log }), host, socketOrigins: [...config.ALLOWED_ORIGINS, ...LOCAL_ORIGINS] });
    const key = secretKey(sessionSecret);
    const token = await signSessionToken(key, { userId: DEMO_USER.id, email: DEMO_USER.email, ttlSeconds: 7 * 86400 });
    const sql = `INSERT INTO \\"Alert\\" (\\"userId\\", title, message) VALUES ('${DEMO_USER.id}', 'Hello from psql', 'Inserted by hand')`;
    const appDb = createDb(databaseUrl, { applicationName: 'pgbell-demo', max: 3 });
    let demo: DemoServer;
    try {
      demo = await startDemoServer({
        port: config.DEMO_PORT,
        host,
        db: appDb,
        key,
        wsUrl: daemon.url,
        user: DEMO_USER,
        // The page shows no password: anyone who can load it would have the database.
        psql: embedded
          ? `PGPASSWORD="$(cat ${path.join(STATE_DIR, 'db-password')})" psql "${withPassword(databaseUrl, '')}" -c "${sql}"   # from this checkout`
          : `psql "${withPassword(databaseUrl, '')}" -c "${sql}"`,
        maxReplay: config.MAX_REPLAY,
        log,
      });
    } catch (err) {
      await daemon.stop();
      await appDb.destroy();
      throw err;
    }
    await writeDevState(stateDir, { pid: process.pid, databaseUrl, wsUrl: daemon.url, demoUrl: demo.url, secretFile: generated?.file });
    const listening = host === DEV_HOST || host === 'localhost' || host === '::1' ? `${host} only (this machine; set HOST to change)` : `${host} (set by HOST)`;
    process.stdout.write(
      [
        '',
        'pgbell is running.',
        `  Demo app:   ${demo.url}   (the live bell; open it in a browser)`,
        `  WebSocket:  ${daemon.url}`,
        `  Health:     ${daemon.url.replace(/^ws/, 'http')}health`,
        `  Listening:  ${listening}`,
        `  Database:   ${databaseUrl}${embedded ? `  (embedded, data in ${embedded.dataDir}; \`npx pgbell clean\` deletes it)` : ''}`,
        `  Demo user:  ${DEMO_USER.id} <${DEMO_USER.email}>`,
        `  Token:      ${token}`,
        '',
        'In another terminal of this checkout, send three test alerts to the demo user:',
        `  npx pgbell send ${DEMO_USER.email}`,
        'or insert one by hand:',
        `  psql "${databaseUrl}" -c "${sql}"`,
        'Any WebSocket client can connect to the URL above and send:',
        `  {"type":"auth","token":"${token}"}`,
        '',
        'Ctrl-C stops everything.',
        '',
      ].join('\n'),
    );
    try {
      await untilSignal(daemon, log);
    } finally {
      await removeDevState(stateDir);
    }
    await demo.close();
    await appDb.destroy();
    return 0;
  } finally {
    if (embedded) {
      await embedded.stop();
      log.info('embedded Postgres stopped');
    }
  }
}

/** `url` with its password replaced ('' removes it). */
function withPassword(url: string, password: string): string {
  const u = new URL(url);
  u.password = password === '' ? '' : encodeURIComponent(password);
  return u.toString();
}

async function rotatePassword(url: string, password: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query(`ALTER ROLE postgres PASSWORD ${client.escapeLiteral(password)}`);
  } finally {
    await client.end();
  }
}
