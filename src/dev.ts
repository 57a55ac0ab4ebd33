/**
 * `pgbell dev` (what `npm start` runs): everything needed to see a live notification on a
 * machine with nothing installed. Embedded Postgres unless DATABASE_URL is set.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { secretKey, signSessionToken } from './auth.js';
import { triggerChannelFor, type Config } from './config.js';
import { daemonOptions, startDaemon, untilSignal } from './daemon.js';
import { ensureUser } from './db/users.js';
import { createDb } from './db/connect.js';
import { migrate } from './db/migrate.js';
import { startDemoServer, type DemoServer } from './demo/server.js';
import { LOCAL_ORIGINS } from './http/origin.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded.js';
import { createLogger } from './log.js';

export const DEMO_USER = { id: 'demo-user', email: 'demo@pgbell.dev', name: 'Demo User' } as const;

export async function runDev(config: Config, opts: { cwd: string }): Promise<number> {
  const log = createLogger(config.LOG_LEVEL);
  const stateDir = path.join(opts.cwd, '.pgbell');
  await mkdir(stateDir, { recursive: true });

  let embedded: EmbeddedPostgres | undefined;
  let databaseUrl = config.DATABASE_URL;
  if (!databaseUrl) {
    log.info(`starting embedded Postgres (data in ${path.join(stateDir, 'data')})`);
    embedded = await startEmbeddedPostgres({ dataDir: path.join(stateDir, 'data'), password: 'pgbell' });
    databaseUrl = embedded.url;
  }
  try {
    const sessionSecret = config.SESSION_SECRET ?? (await devSecret(stateDir));
    await migrate(databaseUrl, { channel: triggerChannelFor(config), log: (m) => log.info(m) });
    const db = createDb(databaseUrl, { max: 1 });
    try {
      await ensureUser(db, DEMO_USER);
    } finally {
      await db.destroy();
    }
    // Dev lets local pages (the demo app) open sockets, on top of any ALLOWED_ORIGINS.
    const daemon = await startDaemon({ ...daemonOptions(config, { databaseUrl, sessionSecret, log }), socketOrigins: [...config.ALLOWED_ORIGINS, ...LOCAL_ORIGINS] });
    const key = secretKey(sessionSecret);
    const token = await signSessionToken(key, { userId: DEMO_USER.id, email: DEMO_USER.email, ttlSeconds: 7 * 86400 });
    const sql = `INSERT INTO \\"Alert\\" (\\"userId\\", title, message) VALUES ('${DEMO_USER.id}', 'Hello from psql', 'Inserted by hand')`;
    const appDb = createDb(databaseUrl, { applicationName: 'pgbell-demo', max: 3 });
    let demo: DemoServer;
    try {
      demo = await startDemoServer({
        port: config.DEMO_PORT,
        host: config.HOST,
        db: appDb,
        key,
        wsUrl: daemon.url,
        user: DEMO_USER,
        psql: `psql "${databaseUrl}" -c "${sql}"`,
        maxReplay: config.MAX_REPLAY,
        log,
      });
    } catch (err) {
      await daemon.stop();
      await appDb.destroy();
      throw err;
    }
    process.stdout.write(
      [
        '',
        'pgbell is running.',
        `  Demo app:   ${demo.url}   (the live bell; open it in a browser)`,
        `  WebSocket:  ${daemon.url}`,
        `  Health:     ${daemon.url.replace(/^ws/, 'http')}health`,
        `  Database:   ${databaseUrl}${embedded ? '  (embedded, data in .pgbell/)' : ''}`,
        `  Demo user:  ${DEMO_USER.id} <${DEMO_USER.email}>`,
        `  Token:      ${token}`,
        '',
        'Connect any WebSocket client to the URL above and send:',
        `  {"type":"auth","token":"${token}"}`,
        'Then insert an alert for the demo user:',
        `  psql "${databaseUrl}" -c "${sql}"`,
        '',
        'Ctrl-C stops everything.',
        '',
      ].join('\n'),
    );
    await untilSignal(daemon, log);
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

/** A stable per-checkout secret, so printed tokens keep working across restarts. */
async function devSecret(stateDir: string): Promise<string> {
  const file = path.join(stateDir, 'session-secret');
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const secret = randomBytes(32).toString('base64url');
  await writeFile(file, secret + '\n', { mode: 0o600 });
  return secret;
}
