/** Pooled connections for queries. The LISTEN connection is separate: see src/listener.ts. */
import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import type { Database } from './schema.js';

export type Db = Kysely<Database>;

export function createDb(connectionString: string, opts: { applicationName?: string; max?: number } = {}): Db {
  const pool = new pg.Pool({
    connectionString,
    application_name: opts.applicationName ?? 'pgbell',
    max: opts.max ?? 5,
    // A pooled client that errors while idle (database restarted) must not crash the process;
    // the pool drops it and the next query opens a fresh one.
  });
  pool.on('error', () => {});
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}
