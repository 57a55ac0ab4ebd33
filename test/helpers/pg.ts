/** Per-file databases copied from the run's migrated template (see test/setup/global.ts). */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { inject } from 'vitest';

export function databaseUrl(serverUrl: string, database: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${database}`;
  return u.toString();
}

let counter = 0;

/** A new, migrated database of its own, with these users in "User" (and nothing else). */
export async function freshDatabase(users: readonly string[] = []): Promise<string> {
  const { adminUrl, template, prefix } = inject('pg');
  const name = `${prefix}${process.pid}_${++counter}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    // Two files copying the template at the same instant can collide ("source database is
    // being accessed by other users"); retry briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
        break;
      } catch (err) {
        if (attempt >= 20 || !/being accessed by other users/.test((err as Error).message)) throw err;
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
      }
    }
  } finally {
    await admin.end();
  }
  const url = databaseUrl(adminUrl, name);
  for (const u of users) await createUser(url, u);
  return url;
}

/** A new database with nothing in it (not migrated). */
export async function emptyDatabase(tag = 'e'): Promise<string> {
  const { adminUrl, prefix } = inject('pg');
  const name = `${prefix}${tag}${process.pid}_${++counter}`;
  await query(adminUrl, `CREATE DATABASE ${name}`);
  return databaseUrl(adminUrl, name);
}

/** Runs SQL on a short-lived connection. */
export async function query<R extends pg.QueryResultRow = pg.QueryResultRow>(url: string, text: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  // The failure reaches the caller through the query; without a listener, pg's 'error' event
  // (a server killed mid-query) would also be thrown as an uncaught exception.
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<R>(text, params)).rows;
  } finally {
    await client.end();
  }
}

export async function createUser(url: string, id: string, email = `${id}@example.test`): Promise<void> {
  await query(url, 'INSERT INTO "User" (id, email) VALUES ($1, $2)', [id, email]);
}

const execFileP = promisify(execFile);

/** Runs the real `psql` binary, as an operator would. */
export async function psql(url: string, sqlText: string): Promise<string> {
  const { stdout } = await execFileP('psql', [url, '-v', 'ON_ERROR_STOP=1', '-X', '-q', '-c', sqlText], { env: { ...process.env, PGCONNECT_TIMEOUT: '5' } });
  return stdout;
}

/**
 * A writer whose commits wait for a synchronous standby that never answers
 * (synchronous_standby_names = 'ghost'): each commit is streamed but stays invisible until
 * `pg_cancel_backend(pid)` ends its wait (the commit stands).
 */
export async function heldWriter(url: string): Promise<{ writer: pg.Client; pid: number }> {
  await query(url, `ALTER SYSTEM SET synchronous_standby_names = 'ghost'`);
  await query(url, `SELECT pg_reload_conf()`);
  await new Promise((r) => setTimeout(r, 300));
  const writer = new pg.Client({ connectionString: url });
  writer.on('error', () => {});
  await writer.connect();
  const pid = (await writer.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  await writer.query('SET synchronous_commit = on');
  return { writer, pid };
}
