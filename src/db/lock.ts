/**
 * Schema changes (`pgbell migrate`, `pgbell install`, `pgbell uninstall`) run on one short-lived
 * connection holding one session advisory lock, so concurrent runs wait for each other and
 * whoever waited then finds nothing to do.
 */
import pg from 'pg';

/** Advisory lock key: the bytes of "pgbell" read as a number. Advisory locks are per database. */
const LOCK_KEY = 0x706762656c6cn;

export async function withSchemaLock<T>(connectionString: string, applicationName: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString, application_name: applicationName });
  // A short-lived client: a lost connection surfaces through the awaited calls; without a
  // listener, pg's 'error' event would also be thrown as an uncaught exception.
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY.toString()]);
    return await fn(client);
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY.toString()]).catch(() => {});
    await client.end();
  }
}

/** Clients inside inTransaction. */
const open = new WeakSet<pg.Client>();

/**
 * Runs `fn` in a transaction on `client`: committed if it resolves, rolled back if it throws.
 * Called inside another on the same client, it is part of that one (install's steps commit or
 * roll back together).
 */
export async function inTransaction<T>(client: pg.Client, fn: () => Promise<T>): Promise<T> {
  if (open.has(client)) return fn();
  await client.query('BEGIN');
  open.add(client);
  try {
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    open.delete(client);
  }
}
