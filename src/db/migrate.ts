/**
 * Applies sql/NNNNNN_*.sql in order, then pgbell's bookkeeping (BOOKKEEPING_STEP). Each file
 * runs once, in its own transaction, with its record (pgbell.pgbell_migrations) written in the
 * same transaction; a session advisory lock serializes concurrent migrators (two daemons
 * starting at once), and whoever waits then finds nothing to do.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { applyBookkeeping, BOOKKEEPING_VERSION, MODEL_MAPPING, PUBLICATION, readSource, setPublication, renormalizeForeignTxids, SCHEMA, setChannel, triggerChannel } from './bookkeeping.js';
import { installedTable } from './install.js';
import { inTransaction, withSchemaLock } from './lock.js';

export { triggerChannel };

/**
 * The last step of every migrate: pgbell's bookkeeping for "Alert", in schema pgbell
 * (src/db/bookkeeping.ts, the same as `pgbell install` gives an app's table). Files 000002–000008
 * put it in columns of "Alert"; this step moves it out, and is pending until it has.
 */
export const BOOKKEEPING_STEP = 'bookkeeping in schema pgbell';

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
  opts: { channel: string; publish?: boolean; log?: (msg: string) => void },
): Promise<MigrateResult> {
  const files = (await readdir(SQL_DIR)).filter((f) => /^\d{6}_.+\.sql$/.test(f)).sort();
  return withSchemaLock(connectionString, 'pgbell-migrate', async (client) => {
    const result: MigrateResult = { applied: [], skipped: [], channelChanged: false };
    const installed = await installedTable((text) => client.query(text));
    if (installed !== null) {
      throw new Error(`pgbell is installed on ${installed} (pgbell install); migrations create pgbell's own "Alert" table and are not for this database. To change the channel, run \`pgbell install\` again with --channel`);
    }
    // The ledger lives in schema pgbell (it lived in public before the bookkeeping moved there).
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
    if ((await client.query(`SELECT to_regclass('public.pgbell_migrations') IS NOT NULL AS p`)).rows[0].p) {
      await client.query(`ALTER TABLE public.pgbell_migrations SET SCHEMA ${SCHEMA}`);
    }
    await client.query(`CREATE TABLE IF NOT EXISTS ${SCHEMA}.pgbell_migrations (
      name text PRIMARY KEY,
      sha256 text NOT NULL,
      "appliedAt" timestamptz NOT NULL DEFAULT now()
    )`);
    const done = new Map<string, string>(
      (await client.query<{ name: string; sha256: string }>(`SELECT name, sha256 FROM ${SCHEMA}.pgbell_migrations`)).rows.map((r) => [r.name, r.sha256]),
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
          await client.query(`INSERT INTO ${SCHEMA}.pgbell_migrations (name, sha256) VALUES ($1, $2)`, [file, sha]);
          await client.query(text);
        });
      } catch (err) {
        throw new Error(`migration ${file} failed: ${(err as Error).message}`);
      }
      result.applied.push(file);
      opts.log?.(`applied ${file}`);
    }
    const before = await readSource((text) => client.query(text));
    const pending = !before || before.version < BOOKKEEPING_VERSION;
    try {
      // On the channel the triggers have now (the daemons running keep hearing them); moved
      // below. Run every time: it brings pgbell's functions, view and triggers up to date.
      await applyBookkeeping(client, MODEL_MAPPING, before?.channel ?? (await legacyChannel(client)) ?? opts.channel, 'migrate');
    } catch (err) {
      throw new Error(`migration step "${BOOKKEEPING_STEP}" failed: ${(err as Error).message}`);
    }
    if (pending) {
      result.applied.push(BOOKKEEPING_STEP);
      opts.log?.(`applied ${BOOKKEEPING_STEP}`);
    }
    const foreign = await renormalizeForeignTxids(client);
    if (foreign > 0) opts.log?.(`re-stamped ${foreign} rows whose transaction ids this server has not handed out yet (restored from another cluster); open cursors reset`);
    // The channel and the publication (the mode) change together.
    const published = await inTransaction(client, async () => {
      const current = await triggerChannel((text) => client.query(text));
      if (current !== opts.channel) {
        await setChannel(client, MODEL_MAPPING, opts.channel);
        result.channelChanged = true;
      }
      return setPublication(client, MODEL_MAPPING, opts.publish ?? false);
    });
    if (result.channelChanged) opts.log?.(opts.channel === '' ? `triggers now send no NOTIFY (${opts.publish ? 'WAL' : 'poll'} mode)` : `trigger now notifies channel ${opts.channel}`);
    if (published) opts.log?.(opts.publish ? `created publication ${PUBLICATION} (WAL mode)` : `dropped publication ${PUBLICATION} (WAL mode is off)`);
    return result;
  });
}

type Run = (text: string) => Promise<{ rows: unknown[] }>;

/** The channel of version 1's "Alert" trigger, if there is one. */
async function legacyChannel(client: pg.Client): Promise<string | null> {
  const { rows } = await client.query<{ c: string }>(
    `SELECT split_part(encode(t.tgargs, 'escape'), '\\000', 1) AS c FROM pg_trigger t WHERE t.tgrelid = to_regclass('public."Alert"') AND t.tgname = '_900_notify'`,
  );
  return rows[0]?.c ?? null;
}

/**
 * Migration files not yet applied to the database (all of them if pgbell never migrated it).
 * None on a database where pgbell is installed onto the app's own table: install brings what
 * the migrations would (see src/db/install.ts).
 */
export async function pendingMigrations(run: Run): Promise<string[]> {
  if ((await installedTable(run)) !== null) return [];
  const files = (await readdir(SQL_DIR)).filter((f) => /^\d{6}_.+\.sql$/.test(f)).sort();
  const source = await readSource(run);
  const bookkeeping = source === null || source.version < BOOKKEEPING_VERSION ? [BOOKKEEPING_STEP] : [];
  const { rows } = await run(`SELECT coalesce(to_regclass('${SCHEMA}.pgbell_migrations'), to_regclass('public.pgbell_migrations'))::text AS ledger`);
  const ledger = (rows[0] as { ledger: string | null }).ledger;
  if (ledger === null) return [...files, ...bookkeeping];
  const done = new Set((await run(`SELECT name FROM ${ledger}`)).rows.map((r) => (r as { name: string }).name));
  return [...files.filter((f) => !done.has(f)), ...bookkeeping];
}
