/** Pooled connections for queries. The LISTEN connection is separate: see src/sources/listen.ts. */
import pg from 'pg';
import { CompiledQuery, Kysely, PostgresDialect } from 'kysely';
import type { Database } from './schema.js';

export type Db = Kysely<Database>;

/** Puts schema "pgbell" in front of the connection's own search_path. */
export const SEARCH_PGBELL_FIRST = `SELECT set_config('search_path', 'pgbell, ' || current_setting('search_path'), false)`;

/**
 * Run on every pooled connection: schema "pgbell" first (above); generic plans for the prepared
 * delivery reads (with array parameters Postgres otherwise plans them on every call, about
 * 1.3 ms each, longer than running them; the generic plans use the same indexes); and no JIT.
 * A generic plan's row estimates are rough, and above jit_above_cost Postgres compiles the
 * query first: about 200 ms for a read that takes 15 ms (measured on a 1,000-row transaction).
 */
const SESSION_SETUP = `${SEARCH_PGBELL_FIRST}, set_config('plan_cache_mode', 'force_generic_plan', false), set_config('jit', 'off', false)`;

/**
 * A pooled connection that runs SESSION_SETUP before it is handed out. Where pgbell is installed
 * onto an app's table, its view and bookkeeping live in schema "pgbell" (src/db/install.ts);
 * harmless where the schema does not exist. (pg's Pool calls connect with a callback.)
 */
class SetupClient extends pg.Client {
  override connect(callback?: any): any {
    // A server that dies while this connection is being set up (an immediate shutdown) fails
    // the connect below, and pg also emits 'error'; the pool listens only once it holds the
    // client, so without this the 'error' would be an uncaught exception.
    if (this.listenerCount('error') === 0) this.on('error', () => {});
    const ready = super.connect().then(() => this.query(SESSION_SETUP)).then(() => this);
    if (!callback) return ready;
    ready.then(() => callback(null, this), (err: Error) => callback(err));
  }
}

const pools = new WeakMap<object, pg.Pool>();

export function createDb(connectionString: string, opts: { applicationName?: string; max?: number } = {}): Db {
  const pool = new pg.Pool({
    Client: SetupClient as unknown as typeof pg.Client,
    connectionString,
    application_name: opts.applicationName ?? 'pgbell',
    max: opts.max ?? 5,
    // A pooled client that errors while idle (database restarted) must not crash the process;
    // the pool drops it and the next query opens a fresh one.
  });
  pool.on('error', () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  pools.set(db, pool);
  return db;
}

/**
 * Runs a query as a named prepared statement on `db`'s pool: for the queries on the delivery
 * path, which are complex enough that planning them each time costs more than running them.
 * Each pooled connection prepares it once. Falls back to Kysely (a transaction, or a Db from
 * elsewhere) when there is no pool to use.
 */
export async function preparedQuery<R extends pg.QueryResultRow>(db: Kysely<Database>, name: string, text: string, values: unknown[]): Promise<R[]> {
  const pool = pools.get(db);
  if (pool) return (await pool.query<R>({ name, text, values })).rows;
  return (await db.executeQuery<R>(CompiledQuery.raw(text, values))).rows;
}
