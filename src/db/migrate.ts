/**
 * Applies sql/NNNNNN_*.sql in order. Each file runs once, in its own transaction, with its
 * record written in the same transaction; a session advisory lock serializes concurrent
 * migrators (two daemons starting at once), and whoever waits then finds nothing to do.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { INSTALLED_NOTIFY_TRIGGERS, installedTable } from './install.js';
import { inTransaction, withSchemaLock } from './lock.js';

/** src/db/ and dist/db/ are both two levels below the package root. */
export const SQL_DIR = fileURLToPath(new URL('../../sql/', import.meta.url));

export interface MigrateResult {
  applied: string[];
  skipped: string[];
  /** Set when the trigger's channel was changed to match the configured one. */
  channelChanged: boolean;
}

export async function migrate(
  connectionString: string,
  opts: { channel: string; log?: (msg: string) => void },
): Promise<MigrateResult> {
  const files = (await readdir(SQL_DIR)).filter((f) => /^\d{6}_.+\.sql$/.test(f)).sort();
  return withSchemaLock(connectionString, 'pgbell-migrate', async (client) => {
    const result: MigrateResult = { applied: [], skipped: [], channelChanged: false };
    const installed = await installedTable((text) => client.query(text));
    if (installed !== null) {
      throw new Error(`pgbell is installed on ${installed} (pgbell install); migrations create pgbell's own "Alert" table and are not for this database. To change the channel, run \`pgbell install\` again with --channel`);
    }
    await client.query(`CREATE TABLE IF NOT EXISTS pgbell_migrations (
      name text PRIMARY KEY,
      sha256 text NOT NULL,
      "appliedAt" timestamptz NOT NULL DEFAULT now()
    )`);
    const done = new Map<string, string>(
      (await client.query<{ name: string; sha256: string }>('SELECT name, sha256 FROM pgbell_migrations')).rows.map((r) => [r.name, r.sha256]),
    );
    for (const file of files) {
      const text = await readFile(SQL_DIR + file, 'utf8');
      const sha = createHash('sha256').update(text).digest('hex');
      const recorded = done.get(file);
      if (recorded !== undefined) {
        if (recorded !== sha) opts.log?.(`warning: ${file} changed after it was applied; shipped migrations must not be edited`);
        result.skipped.push(file);
        continue;
      }
      try {
        await inTransaction(client, async () => {
          await client.query('INSERT INTO pgbell_migrations (name, sha256) VALUES ($1, $2)', [file, sha]);
          await client.query(text);
        });
      } catch (err) {
        throw new Error(`migration ${file} failed: ${(err as Error).message}`);
      }
      result.applied.push(file);
      opts.log?.(`applied ${file}`);
    }
    const foreign = await renormalizeForeignTxids(client);
    if (foreign > 0) opts.log?.(`re-stamped ${foreign} rows whose transaction ids this server has not handed out yet (restored from another cluster); open cursors reset`);
    result.channelChanged = await syncTriggerChannel(client, opts.channel);
    if (result.channelChanged) opts.log?.(opts.channel === '' ? 'triggers now send no NOTIFY (poll mode)' : `trigger now notifies channel ${opts.channel}`);
    return result;
  });
}

/**
 * The triggers that notify, as `pgbell migrate` (re)creates them when PGBELL_CHANNEL changes.
 * Keep in step with the latest migrations that define them (sql/000003_changes.sql,
 * sql/000004_revocations.sql).
 */
const NOTIFY_TRIGGERS = [
  {
    table: '"Alert"',
    name: '_900_notify',
    define: (channel: string) =>
      `CREATE OR REPLACE TRIGGER _900_notify AFTER INSERT OR UPDATE ON "Alert"
         FOR EACH STATEMENT EXECUTE FUNCTION tg_alert__notify(${channel})`,
  },
  {
    table: '"Alert"',
    name: '_900_notify_delete',
    define: (channel: string) =>
      `CREATE OR REPLACE TRIGGER _900_notify_delete AFTER DELETE ON "Alert"
         REFERENCING OLD TABLE AS old_rows
         FOR EACH STATEMENT EXECUTE FUNCTION tg_alert__deleted(${channel})`,
  },
  {
    table: 'pgbell_revocation',
    name: '_900_notify',
    define: (channel: string) =>
      `CREATE OR REPLACE TRIGGER _900_notify AFTER INSERT ON pgbell_revocation
         FOR EACH ROW EXECUTE FUNCTION tg_revocation__notify(${channel})`,
  },
] as const;

type Run = (text: string) => Promise<{ rows: unknown[] }>;

/**
 * The channel pgbell's triggers notify on: null if one is missing, or "a and b" if they
 * disagree (a half-finished manual change).
 */
export async function triggerChannel(run: Run): Promise<string | null> {
  const installed = (await installedTable(run)) !== null;
  const wanted = installed ? INSTALLED_NOTIFY_TRIGGERS : NOTIFY_TRIGGERS.map((t) => `(to_regclass('${t.table}')::oid, '${t.name}')`);
  const { rows } = await run(`SELECT t.tgargs AS args FROM pg_trigger t WHERE (t.tgrelid, t.tgname) IN (${wanted.join(', ')})`);
  if (rows.length < wanted.length) return null;
  const channels = new Set(
    (rows as Array<{ args: Buffer | string }>).map(({ args }) => {
      // tgargs is bytea: NUL-terminated arguments.
      const text = Buffer.isBuffer(args) ? args.toString('utf8') : args;
      return text.split('\0')[0] ?? '';
    }),
  );
  return [...channels].join(' and ');
}

/**
 * Migration files not yet applied to the database (all of them if pgbell never migrated it).
 * None on a database where pgbell is installed onto the app's own table: install brings what
 * the migrations would (see src/db/install.ts).
 */
export async function pendingMigrations(run: Run): Promise<string[]> {
  if ((await installedTable(run)) !== null) return [];
  const files = (await readdir(SQL_DIR)).filter((f) => /^\d{6}_.+\.sql$/.test(f)).sort();
  const { rows } = await run(`SELECT to_regclass('pgbell_migrations') IS NOT NULL AS present`);
  if (!(rows[0] as { present: boolean }).present) return files;
  const done = new Set((await run('SELECT name FROM pgbell_migrations')).rows.map((r) => (r as { name: string }).name));
  return files.filter((f) => !done.has(f));
}

/**
 * A database restored (pg_dump, pg_restore) into another cluster keeps the transaction ids its
 * rows were stamped with in the old one. Where those are above what this cluster has handed
 * out, every horizon is below them: the rows would be re-read by every sync and poll, and a
 * relay would catch up from a horizon in the future (publishing nothing). They are re-stamped
 * as old ('3', the first normal transaction id): cursors from the old cluster reset anyway (the
 * database id includes the cluster's). `_100_changed` is off meanwhile, or the UPDATE would make
 * every row a change of this transaction. Returns how many rows were re-stamped.
 */
async function renormalizeForeignTxids(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ x: string }>(`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x`);
  const x = rows[0]!.x;
  const { rows: seen } = await client.query<{ n: string }>(
    `SELECT (SELECT count(*) FROM "Alert" WHERE txid >= $1::xid8 OR "changedTxid" >= $1::xid8)
          + (SELECT count(*) FROM "AlertTombstone" WHERE txid >= $1::xid8)
          + (SELECT count(*) FROM pgbell_state WHERE "relayTxid" >= $1::xid8 OR "prunedTxid" >= $1::xid8) AS n`,
    [x],
  );
  const n = Number(seen[0]!.n);
  if (n === 0) return 0;
  await inTransaction(client, async () => {
    await client.query(`ALTER TABLE "Alert" DISABLE TRIGGER _100_changed`);
    await client.query(
      `UPDATE "Alert" SET txid = CASE WHEN txid >= $1::xid8 THEN '3'::xid8 ELSE txid END,
                          "changedTxid" = CASE WHEN "changedTxid" >= $1::xid8 THEN '3'::xid8 ELSE "changedTxid" END
        WHERE txid >= $1::xid8 OR "changedTxid" >= $1::xid8`,
      [x],
    );
    await client.query(`UPDATE "AlertTombstone" SET txid = '3' WHERE txid >= $1::xid8`, [x]);
    await client.query(
      `UPDATE pgbell_state SET "relayTxid" = CASE WHEN "relayTxid" >= $1::xid8 THEN NULL ELSE "relayTxid" END,
                               "prunedTxid" = CASE WHEN "prunedTxid" >= $1::xid8 THEN '0'::xid8 ELSE "prunedTxid" END`,
      [x],
    );
    await client.query(`ALTER TABLE "Alert" ENABLE TRIGGER _100_changed`);
  });
  return n;
}

async function syncTriggerChannel(client: pg.Client, channel: string): Promise<boolean> {
  const current = await triggerChannel((text) => client.query(text));
  if (current === channel) return false;
  // CREATE OR REPLACE TRIGGER (Postgres 14+) swaps the argument atomically; all in one
  // transaction so they never disagree.
  await inTransaction(client, async () => {
    for (const t of NOTIFY_TRIGGERS) await client.query(t.define(client.escapeLiteral(channel)));
  });
  return true;
}
