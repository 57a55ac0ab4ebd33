/** The app's database: the same DATABASE_URL pgbell reads. One pool per server process. */
import pg from 'pg';
import { createDb } from 'pgbell';

const g = globalThis as unknown as { appPool?: pg.Pool; pgbellDb?: ReturnType<typeof createDb> };

export const pool = (g.appPool ??= new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 }));
/** pgbell's own handle on the database, for alertsHandler. */
export const pgbellDb = (g.pgbellDb ??= createDb(process.env.DATABASE_URL!));
