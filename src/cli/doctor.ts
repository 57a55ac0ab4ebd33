/**
 * `pgbell doctor`: checks what `pgbell start` needs, one line per check, and says what to fix.
 * Exit code 0 when everything passes.
 */
import pg from 'pg';
import { triggerChannelFor, type Config } from '../config.js';
import { SEARCH_PGBELL_FIRST } from '../db/connect.js';
import { readSource, SCHEMA, tableSql } from '../db/bookkeeping.js';
import { installedTable } from '../db/install.js';
import { pendingMigrations, triggerChannel } from '../db/migrate.js';
import { checkRedis } from '../fanout/check.js';
import { walChecks } from '../sources/walcheck.js';
import type { Check } from '../check.js';

export async function doctor(config: Config, databaseUrl: string, out: (line: string) => void): Promise<boolean> {
  const checks: Check[] = [];
  const report = (c: Check) => {
    checks.push(c);
    out(`${c.ok ? '✓' : '✗'} ${c.name}: ${c.detail}`);
  };
  const listenUrl = config.LISTEN_DATABASE_URL ?? databaseUrl;
  const db = new pg.Client({ connectionString: databaseUrl, application_name: 'pgbell-doctor' });
  // A short-lived client: a lost connection surfaces through the awaited calls; without a
  // listener, pg's 'error' event would also be thrown as an uncaught exception.
  db.on('error', () => {});
  try {
    await db.connect();
    await db.query(SEARCH_PGBELL_FIRST);
  } catch (err) {
    report({ name: 'database', ok: false, detail: `cannot connect to DATABASE_URL: ${(err as Error).message}` });
    return false;
  }
  try {
    const { rows } = await db.query<{ v: number; version: string }>(`SELECT current_setting('server_version_num')::int AS v, current_setting('server_version') AS version`);
    const v = rows[0]!;
    report({ name: 'database', ok: v.v >= 140000, detail: v.v >= 140000 ? `PostgreSQL ${v.version}` : `PostgreSQL ${v.version}: pgbell needs 14 or later` });

    const run = (text: string) => db.query(text);
    const installed = await installedTable(run);
    const pending = await pendingMigrations(run);
    report({
      name: 'migrations',
      ok: pending.length === 0,
      detail: installed ? `none needed: pgbell is installed on ${installed}` : pending.length === 0 ? 'all applied' : `missing ${pending.join(', ')}: run \`pgbell migrate\``,
    });

    if (pending.length === 0) {
      const channel = await triggerChannel(run);
      const wanted = triggerChannelFor(config);
      const ok = channel === wanted;
      const what = (c: string) => (c === '' ? 'send no NOTIFY (poll or WAL mode)' : `notify channel "${c}"`);
      const fix = installed ? '`pgbell install` again' : '`pgbell migrate`';
      report({
        name: 'triggers',
        ok,
        detail:
          channel === null
            ? `missing: run ${fix}`
            : ok
              ? what(channel)
              : `${what(channel)} but ${wanted === '' ? `PGBELL_MODE is ${config.PGBELL_MODE}` : channel === '' ? 'PGBELL_MODE is notify' : `PGBELL_CHANNEL is "${wanted}"`}: run ${fix} with the same PGBELL_CHANNEL and PGBELL_MODE`,
      });
    }

    if (pending.length === 0) report(await undeliverable(db));
    report(await durability(db));

    if (config.PGBELL_MODE === 'poll') {
      report({ name: 'poll mode', ok: true, detail: `no LISTEN needed: the daemon reads new changes every ${config.PGBELL_POLL_MS} ms` });
    } else if (config.PGBELL_MODE === 'wal') {
      for (const c of await walChecks(run, listenUrl, config.LISTEN_DATABASE_URL ? 'LISTEN_DATABASE_URL' : 'DATABASE_URL')) report(c);
    } else await checkListen();

    if (config.PGBELL_FANOUT === 'redis') report(await checkRedis({ url: config.REDIS_URL, clusterNodes: config.REDIS_CLUSTER_NODES }));

    const usage = Number((await db.query<{ u: number }>('SELECT pg_notification_queue_usage() AS u')).rows[0]!.u);
    report({
      name: 'NOTIFY queue',
      ok: usage <= 0.5,
      detail: usage <= 0.5 ? `${(usage * 100).toFixed(1)}% used` : `${(usage * 100).toFixed(1)}% used: a LISTEN session is not reading (see pg_stat_activity); writers fail when it is full`,
    });
  } finally {
    await db.end().catch(() => {});
  }
  const failed = checks.filter((c) => !c.ok).length;
  out(failed === 0 ? 'all checks passed' : `${failed} check${failed === 1 ? '' : 's'} failed`);
  return failed === 0;

  /** The listener's connection reaches the primary and hears a NOTIFY sent on DATABASE_URL. */
  async function checkListen(): Promise<void> {
    const listener = new pg.Client({ connectionString: listenUrl, application_name: 'pgbell-doctor-listen' });
    listener.on('error', () => {});
    const which = config.LISTEN_DATABASE_URL ? 'LISTEN_DATABASE_URL' : 'DATABASE_URL';
    try {
      await listener.connect();
      const replica = (await listener.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r;
      report({ name: 'listener connection', ok: !replica, detail: replica ? `${which} points at a read replica: point it at the primary` : `${which} reaches the primary` });
      const nonce = `doctor-${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
      const heard = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 3000);
        listener.on('notification', (n) => {
          if (n.payload?.includes(nonce)) {
            clearTimeout(timer);
            resolve(true);
          }
        });
      });
      await listener.query(`LISTEN ${pg.escapeIdentifier(config.PGBELL_CHANNEL)}`);
      await db.query('SELECT pg_notify($1, $2)', [config.PGBELL_CHANNEL, JSON.stringify({ probe: nonce })]);
      const ok = await heard;
      report({
        name: 'LISTEN round trip',
        ok,
        detail: ok ? 'a NOTIFY sent on DATABASE_URL arrived on the listener connection' : `nothing arrived within 3 s: ${which} goes through a transaction-mode pooler (e.g. PgBouncer) or to another database; use a direct session connection`,
      });
    } catch (err) {
      report({ name: 'listener connection', ok: false, detail: `cannot use ${which}: ${(err as Error).message}` });
    } finally {
      await listener.end().catch(() => {});
    }
  }
}

/**
 * Rows the app stored that pgbell does not send: no owner (the user column is NULL), or, on an
 * installed table, a row to_jsonb refuses (sent without its data). Never a failure: the
 * writer's rows are the app's; this says how many and why. Reads the whole table.
 */
async function undeliverable(db: pg.Client): Promise<Check> {
  const source = await readSource((text) => db.query(text));
  if (!source) return { name: 'undelivered rows', ok: true, detail: 'no table to check' };
  const m = source.mapping;
  const owner = pg.escapeIdentifier(m.userColumn);
  const noData = source.kind === 'install' && !m.dataColumn ? `count(*) FILTER (WHERE (SELECT f.data FROM ${SCHEMA}.row_of(t.${pg.escapeIdentifier(m.idColumn)}) f) IS NULL)` : '0';
  const { rows } = await db.query<{ owner: string; data: string }>(`SELECT count(*) FILTER (WHERE t.${owner} IS NULL) AS owner, ${noData} AS data FROM ${tableSql(m.table)} t`);
  const n = { owner: Number(rows[0]!.owner), data: Number(rows[0]!.data) };
  const parts = [
    ...(n.owner > 0 ? [`${n.owner} row${n.owner === 1 ? ' has' : 's have'} no owner (${m.userColumn} IS NULL): stored, never sent`] : []),
    ...(n.data > 0 ? [`${n.data} row${n.data === 1 ? '' : 's'} cannot be rendered as JSON (a json value Postgres's jsonb refuses, such as \\u0000): sent without data`] : []),
  ];
  return { name: 'undelivered rows', ok: true, detail: parts.length === 0 ? `none: every row of ${m.table} has an owner` : parts.join('; ') };
}

/**
 * Whether a commit pgbell delivers is one a crash keeps. With synchronous_commit or fsync off,
 * a crash can lose a commit a tab already showed, and Postgres hands its transaction id out
 * again. Not a failure (it is the operator's choice, and writers may set it per session); the
 * line says what it costs. See docs/guarantees.md.
 */
async function durability(db: pg.Client): Promise<Check> {
  const { rows } = await db.query<{ sc: string; fsync: string }>(`SELECT current_setting('synchronous_commit') AS sc, current_setting('fsync') AS fsync`);
  const { sc, fsync } = rows[0]!;
  const off = [...(sc === 'off' ? ['synchronous_commit'] : []), ...(fsync === 'off' ? ['fsync'] : [])];
  return {
    name: 'durability',
    ok: true,
    detail:
      off.length === 0
        ? `synchronous_commit ${sc}, fsync on: what pgbell delivers survives a crash (writers that set synchronous_commit = off in their own sessions lose that)`
        : `${off.join(' and ')} off by default: a crash can lose commits a tab already showed; pgbell resets a cursor that holds such a transaction when it sees one, but cannot once the id was handed out again (see docs/guarantees.md)`,
  };
}
