/**
 * What a starting daemon checks before it serves, failing with one line that says what to
 * change (StartupError): the database reachable and migrated, its triggers notifying as the
 * mode expects, and the LISTEN connection reaching the primary. Separate from daemon.ts: these
 * read the database's state, and run before any piece is wired.
 */
import { sql } from 'kysely';
import pg from 'pg';
import type { Db } from '../db/connect.js';
import { BOOKKEEPING_VERSION, readSource } from '../db/bookkeeping.js';
import { installedTable } from '../db/install.js';
import { pendingMigrations, triggerChannel } from '../db/migrate.js';
import type { Mode } from '../sources/index.js';

export class StartupError extends Error {
  override name = 'StartupError';
}

/** A read replica accepts LISTEN but never hears the primary's NOTIFY: refuse it by name. */
export async function checkListenDatabase(url: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, application_name: 'pgbell-check' });
  // A short-lived client: a lost connection surfaces through the awaited calls; without a
  // listener, pg's 'error' event would also be thrown as an uncaught exception.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    throw new StartupError(`cannot connect to ${name}: ${(err as Error).message}`);
  }
  try {
    const { rows } = await client.query<{ replica: boolean }>('SELECT pg_is_in_recovery() AS replica');
    if (rows[0]!.replica) throw new StartupError(`${name} points at a read replica (pg_is_in_recovery() is true): NOTIFY sent on the primary never reaches it; point it at the primary`);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Fails early, saying what to do, when the database is unreachable or not migrated. */
export async function checkDatabase(db: Db, channel: string, mode: Mode): Promise<void> {
  try {
    await sql`SELECT 1`.execute(db);
  } catch (err) {
    throw new StartupError(`cannot connect to DATABASE_URL: ${(err as Error).message}`);
  }
  const run = (text: string) => sql.raw(text).execute(db);
  const pending = await pendingMigrations(run);
  if (pending.length > 0) throw new StartupError(`the database is missing migrations ${pending.join(', ')}: run \`pgbell migrate\` first`);
  const installed = await installedTable(run);
  const source = await readSource(run);
  if (source && source.version > BOOKKEEPING_VERSION) {
    throw new StartupError(`schema pgbell is at bookkeeping version ${source.version}, made by a newer pgbell than this one (version ${BOOKKEEPING_VERSION}); run the newer pgbell`);
  }
  if (installed && source && source.version < BOOKKEEPING_VERSION) {
    throw new StartupError(`the bookkeeping on ${installed} is from an older pgbell: run \`pgbell install\` again with the same options to bring it up to date`);
  }
  const current = await triggerChannel(run);
  if (current === null) {
    throw new StartupError(installed ? `the notify triggers on ${installed} are missing: run \`pgbell install\` again` : 'the "Alert" table or its notify triggers are missing: run `pgbell migrate` first');
  }
  if (current !== channel) {
    const what = (c: string) => (c === '' ? 'sends no NOTIFY (poll or WAL mode)' : `notifies channel "${c}"`);
    const want = channel === '' ? `PGBELL_MODE is ${mode}` : `PGBELL_CHANNEL is "${channel}"${current === '' ? ' and PGBELL_MODE is notify' : ''}`;
    const remedy = installed ? `run \`pgbell install\` again with the same PGBELL_MODE${channel === '' ? '' : ` and --channel ${channel}`}` : 'run `pgbell migrate` with the same PGBELL_CHANNEL and PGBELL_MODE';
    throw new StartupError(`the ${installed ?? '"Alert"'} trigger ${what(current)} but ${want}: ${remedy}`);
  }
}
