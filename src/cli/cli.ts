/**
 * `pgbell <command>`: parses flags, loads config, calls one function per command.
 * Returns the exit code; bin/pgbell.js turns a thrown error into one line on stderr.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { parseTtl, secretKey, signSessionToken } from '../auth.js';
import { ENV_HELP, loadConfig, need, triggerChannelFor, type Config } from '../config.js';
import { daemonOptions, startDaemon, untilSignal } from '../daemon/daemon.js';
import { isWorker, runWorker, startMachine, workerCount, type Machine } from '../daemon/workers.js';
import { install, uninstall } from '../db/install.js';
import { databaseMode, PUBLICATION } from '../db/bookkeeping.js';
import { migrate } from '../db/migrate.js';
import { runDev } from './dev.js';
import { clean, withRunningDev } from './devstate.js';
import { doctor } from './doctor.js';
import { createLogger } from '../log.js';

export const HELP = `pgbell — live notifications from a Postgres "Alert" table to WebSocket clients

Usage: pgbell <command> [options]

Commands:
  start [--workers N|auto]   run the daemon: LISTEN on Postgres, serve WebSocket + /health on PORT;
                             with --workers, N processes serve PORT and one reads the database
  migrate                    create or update the schema and trigger (safe to run concurrently, idempotent);
                             like install, it keeps the mode the database is in unless PGBELL_MODE is set
  install --table T --user-column C [--id-column C] [--type-column C] [--title-column C]
          [--message-column C] [--link-column C] [--read-column C] [--created-column C] [--channel N]
                             put pgbell onto an existing table instead of its own "Alert" (idempotent;
                             everything it adds is named pgbell_* or lives in schema pgbell)
  uninstall                  remove exactly what install added
  doctor                     check the database, migrations, triggers, LISTEN round trip, replica/pooler,
                             NOTIFY queue; print what to fix (exit 1 if anything fails)
  token <userId> [--email E] [--ttl 1h]
                             print a session token for userId, signed with SESSION_SECRET
  send <email>               insert 3 test alerts for the user with that email (plain SQL, like any writer)
  dev                        zero-setup: embedded Postgres in ./.pgbell (unless DATABASE_URL is set),
                             migrate, a demo user, the daemon; prints a token and a psql command.
                             While it runs, the other commands run from the same checkout use its
                             database and secret when DATABASE_URL / SESSION_SECRET are unset
  clean                      delete this checkout's dev state and embedded Postgres data (.pgbell/,
                             and the data folder dev's banner names when it is elsewhere)
  help                       this text

Options:
  --email <email>            (token) email claim to include
  --ttl <duration>           (token) lifetime: 90s, 15m, 1h, 7d (default 1h)
  --table <name>             (install) the table, optionally schema-qualified
  --user-column <col>        (install) whose alert a row is; tokens' sub must equal its text form
  --channel <name>           (install) NOTIFY channel (default PGBELL_CHANNEL)
  --workers <N|auto>         (start) worker processes, auto = one per core (default PGBELL_WORKERS, 1)
  -h, --help                 this text

Environment:
${ENV_HELP.map(([k, v]) => `  ${k.padEnd(17)} ${v}`).join('\n')}

Examples:
  npm start                                   # same as: pgbell dev
  DATABASE_URL=postgres://localhost/app pgbell migrate
  DATABASE_URL=postgres://localhost/app SESSION_SECRET=... pgbell start
  SESSION_SECRET=... pgbell token user-1 --email ada@example.com --ttl 8h
  psql "$DATABASE_URL" -c "INSERT INTO \\"Alert\\" (\\"userId\\", title) VALUES ('user-1', 'Hello')"
`;

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      email: { type: 'string' },
      ttl: { type: 'string', default: '1h' },
      help: { type: 'boolean', short: 'h' },
      table: { type: 'string' },
      'user-column': { type: 'string' },
      'id-column': { type: 'string' },
      'type-column': { type: 'string' },
      'title-column': { type: 'string' },
      'message-column': { type: 'string' },
      'link-column': { type: 'string' },
      'read-column': { type: 'string' },
      'created-column': { type: 'string' },
      channel: { type: 'string' },
      workers: { type: 'string' },
    },
  });
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (command === 'dev') return runDev(loadConfig(env), { cwd: process.cwd() });
  if (command === 'clean') {
    const removed = await clean(process.cwd());
    console.log(removed.length ? `removed ${removed.join(' and ')}` : 'nothing to clean here (no .pgbell/)');
    return 0;
  }
  // A second terminal beside `pgbell dev` needs no environment: the running dev's database
  // and secret fill what the environment leaves unset.
  const loadConfigFor = (e: NodeJS.ProcessEnv) => withRunningDev(loadConfig(e), process.cwd());
  switch (command) {
    case 'start':
      // The flag is the variable, checked the same way.
      return cmdStart(loadConfig(values.workers === undefined ? env : { ...env, PGBELL_WORKERS: values.workers }));
    case 'migrate':
      return cmdMigrate(await withDatabaseMode(await loadConfigFor(env), env, 'migrate'));
    case 'install':
      return cmdInstall(await withDatabaseMode(await loadConfigFor(env), env, 'install', values.channel), values);
    case 'uninstall':
      return cmdUninstall(await loadConfigFor(env));
    case 'doctor': {
      const { config } = await withDatabaseMode(await loadConfigFor(env), env, 'doctor');
      return (await doctor(config, need(config, 'DATABASE_URL', 'doctor'), (l) => console.log(l))) ? 0 : 1;
    }
    case 'token':
      return cmdToken(await loadConfigFor(env), rest[0], values.email, values.ttl);
    case 'send':
      return cmdSend(await loadConfigFor(env), rest[0]);
    default:
      throw new Error(`unknown command "${command}"; run \`pgbell --help\` for the list`);
  }
}

async function cmdStart(config: Config): Promise<number> {
  const log = createLogger(config.LOG_LEVEL ?? 'info', { format: config.LOG_FORMAT });
  const options = daemonOptions(config, {
    databaseUrl: need(config, 'DATABASE_URL', 'start'),
    sessionSecret: need(config, 'SESSION_SECRET', 'start'),
    log,
  });
  // --workers N: this process is the machine's reader and the workers' primary, or one of them.
  if (isWorker()) {
    await runWorker(options);
    return 0;
  }
  const workers = workerCount(config.PGBELL_WORKERS);
  // SIGHUP (systemd's reload, a terminal's hangup) never ends the daemon: with workers it is a
  // rolling restart; one process has nothing to replace. Set before the start, which takes a
  // while, so a hangup meanwhile does not kill it either.
  let machine: Machine | null = null;
  const onHup = () => {
    if (machine) {
      log.info('SIGHUP received; restarting the workers one at a time');
      void machine.restart();
    } else log.warn(workers > 1 ? 'SIGHUP received while starting: ignored' : 'SIGHUP received: ignored (a rolling restart needs --workers 2 or more)');
  };
  process.on('SIGHUP', onHup);
  try {
    if (workers > 1) {
      machine = await startMachine(options, workers, log);
      await untilSignal(machine, log);
      return 0;
    }
    const daemon = await startDaemon(options);
    await untilSignal(daemon, log);
    return 0;
  } finally {
    process.off('SIGHUP', onHup);
  }
}

type Mode = Config['PGBELL_MODE'];
const MODE_NAME: Record<Mode, string> = { notify: 'notify', poll: 'poll', wal: 'WAL' };

/** `config` for migrate, install or doctor, and the mode the database was in (null: none yet). */
interface WithMode {
  config: Config;
  was: Mode | null;
}

/**
 * PGBELL_MODE and PGBELL_CHANNEL where neither the environment nor --channel sets them: the
 * database's own (its triggers' channel, its publication). So a bare `migrate` or `install`, as
 * in a second terminal beside `pgbell dev`, keeps the mode the deployment runs in; switching
 * takes PGBELL_MODE, and says so.
 */
async function withDatabaseMode(config: Config, env: NodeJS.ProcessEnv, command: string, channelFlag?: string): Promise<WithMode> {
  const set = (key: string) => env[key] !== undefined && env[key] !== '';
  if (config.DATABASE_URL === undefined || (set('PGBELL_MODE') && (set('PGBELL_CHANNEL') || channelFlag !== undefined))) return { config, was: null };
  const client = new pg.Client({ connectionString: config.DATABASE_URL, application_name: `pgbell-${command}` });
  client.on('error', () => {});
  let current: Awaited<ReturnType<typeof databaseMode>>;
  try {
    await client.connect();
    current = await databaseMode((text) => client.query(text));
  } catch {
    // The command itself connects next, and fails saying why.
    return { config, was: null };
  } finally {
    await client.end().catch(() => {});
  }
  if (current === null) return { config, was: null };
  const mode = set('PGBELL_MODE') ? config.PGBELL_MODE : current.mode;
  const channel = channelFlag ?? (set('PGBELL_CHANNEL') || current.mode !== 'notify' ? config.PGBELL_CHANNEL : current.channel);
  return { config: Object.freeze({ ...config, PGBELL_MODE: mode, PGBELL_CHANNEL: channel }), was: current.mode };
}

/** One line when PGBELL_MODE moved the database to another mode: its daemons must follow. */
function reportSwitch({ config, was }: WithMode): void {
  const mode = config.PGBELL_MODE;
  if (was !== null && was !== mode) {
    console.log(`switched from ${MODE_NAME[was]} mode to ${MODE_NAME[mode]} mode (PGBELL_MODE=${mode}): daemons on this database must run with PGBELL_MODE=${mode}`);
  }
}

async function cmdMigrate(withMode: WithMode): Promise<number> {
  const { config } = withMode;
  const result = await migrate(need(config, 'DATABASE_URL', 'migrate'), {
    channel: triggerChannelFor(config),
    publish: config.PGBELL_MODE === 'wal',
    log: (m) => console.log(m),
  });
  console.log(result.applied.length ? `migrated: ${result.applied.length} applied, ${result.skipped.length} already applied` : `up to date (${result.skipped.length} migrations already applied)`);
  reportSwitch(withMode);
  return 0;
}

async function cmdInstall(withMode: WithMode, flags: Record<string, string | boolean | undefined>): Promise<number> {
  const { config } = withMode;
  const flag = (name: string) => (typeof flags[name] === 'string' ? (flags[name] as string) : undefined);
  const table = flag('table');
  const userColumn = flag('user-column');
  if (!table || !userColumn) throw new Error('usage: pgbell install --table <table> --user-column <column> [options]; see `pgbell --help`');
  const result = await install(need(config, 'DATABASE_URL', 'install'), {
    table,
    userColumn,
    idColumn: flag('id-column'),
    typeColumn: flag('type-column'),
    titleColumn: flag('title-column'),
    messageColumn: flag('message-column'),
    linkColumn: flag('link-column'),
    readColumn: flag('read-column'),
    createdColumn: flag('created-column'),
    channel: triggerChannelFor(config),
    publish: config.PGBELL_MODE === 'wal',
  });
  const mode = config.PGBELL_MODE;
  if (result.installed) {
    console.log(
      mode === 'notify'
        ? `installed on ${result.table}: every committed change now notifies; start the daemon with the same PGBELL_CHANNEL`
        : `installed on ${result.table} for ${mode === 'wal' ? 'WAL' : 'poll'} mode (no NOTIFY); start the daemon with PGBELL_MODE=${mode}`,
    );
  } else if (result.channelChanged || result.publicationChanged) {
    const now = mode === 'notify' ? `notify channel ${config.PGBELL_CHANNEL}` : `send no NOTIFY (${mode === 'wal' ? 'WAL' : 'poll'} mode)`;
    console.log(`already installed on ${result.table}; its triggers now ${now}${mode === 'wal' ? `, and publication ${PUBLICATION} is there for WAL mode` : ''}`);
  }
  else if (result.refreshed) console.log(`already installed on ${result.table}; its trigger functions were brought up to date`);
  else console.log(`already installed on ${result.table}; nothing to do`);
  reportSwitch(withMode);
  if (result.restamped > 0) console.log(`re-stamped ${result.restamped} bookkeeping rows whose transaction ids this server has not handed out yet (restored from another cluster); open cursors reset`);
  console.log(
    `pgbell's triggers run as role ${result.owner} (SECURITY DEFINER), whatever role writes ${result.table}: a writer needs only its own rights on the table, nothing on schema pgbell. Rows whose ${userColumn} is NULL are stored and not delivered (pgbell doctor counts them).`,
  );
  return 0;
}

async function cmdUninstall(config: Config): Promise<number> {
  const table = await uninstall(need(config, 'DATABASE_URL', 'uninstall'));
  console.log(table === null ? 'pgbell is not installed in this database; nothing to do' : `uninstalled from ${table}: its triggers and schema pgbell are gone`);
  return 0;
}

async function cmdToken(config: Config, userId: string | undefined, email: string | undefined, ttl: string): Promise<number> {
  if (!userId) throw new Error('usage: pgbell token <userId> [--email E] [--ttl 1h]');
  const token = await signSessionToken(secretKey(need(config, 'SESSION_SECRET', 'token')), {
    userId,
    email: email ?? null,
    ttlSeconds: parseTtl(ttl),
  });
  console.log(token);
  return 0;
}

/** Inserts three sample alerts with plain SQL, exactly as any other writer would. */
async function cmdSend(config: Config, email: string | undefined): Promise<number> {
  if (!email) throw new Error('usage: pgbell send <email>');
  const client = new pg.Client({ connectionString: need(config, 'DATABASE_URL', 'send'), application_name: 'pgbell-send' });
  // A short-lived client: a lost connection surfaces through the awaited calls; without a
  // listener, pg's 'error' event would also be thrown as an uncaught exception.
  client.on('error', () => {});
  await client.connect();
  try {
    const user = await client.query<{ id: string }>('SELECT id FROM "User" WHERE email = $1', [email]);
    if (user.rows.length === 0) {
      console.error(`pgbell: no user with email ${email} in "User"`);
      return 1;
    }
    const userId = user.rows[0]!.id;
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO "Alert" ("userId", type, title, message, link) VALUES
         ($1, 'info', 'Welcome to pgbell', 'This notification came from a plain INSERT.', NULL),
         ($1, 'success', 'Deployment finished', 'Your app is live.', '/deployments'),
         ($1, 'warning', 'Storage almost full', 'You have used 90% of your quota.', '/settings/storage')
       RETURNING id`,
      [userId],
    );
    console.log(`inserted ${rows.length} alerts for ${email} (user ${userId}): ${rows.map((r) => r.id).join(', ')}`);
    return 0;
  } finally {
    await client.end();
  }
}
