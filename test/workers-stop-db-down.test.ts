/**
 * The primary of `pgbell start --workers N` exits on SIGTERM while its live read is failing
 * (the database refuses connections): Forwarder.close() stops retrying before it drains, as one
 * daemon gives a failing read up after DRAIN_MS (5 s) and exits. (Draining first retried the
 * read it waited for for ever.)
 */
import pg from 'pg';
import { afterAll, expect, inject, it } from 'vitest';
import { cleanEnv, launch, type Launched } from './helpers/cli.js';
import { SECRET } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';

const running: Launched[] = [];
const restore: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const r of restore) await r();
  for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
});

it('SIGTERM while the live read cannot reach the database: the machine still exits within a bound', async () => {
  const db = await freshDatabase(['dd0']);
  const dbName = new URL(db).pathname.slice(1);
  const admin = inject('pg').adminUrl;
  const p = launch(['start', '--workers', '2'], cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PORT: '0', HOST: '127.0.0.1', LOG_FORMAT: 'json' }));
  running.push(p);
  await p.waitFor(/pgbell listening on .* with 2 workers/, 60_000);
  const writer = new pg.Client({ connectionString: db });
  await writer.connect();
  restore.push(() => query(admin, `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`), () => writer.end());
  // The listener stays; the primary's read pool loses its connections and cannot open new ones.
  await query(admin, `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS false`);
  await query(admin, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgbell-reader'`, [dbName]);
  await writer.query(`INSERT INTO "Alert" ("userId", title) VALUES ('dd0', 'while the reader is cut off')`);
  await new Promise((r) => setTimeout(r, 500));
  const t0 = Date.now();
  p.child.kill('SIGTERM');
  const exited = await Promise.race([p.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 15_000))]);
  // The workers did stop (each logged it); the primary is what hangs, in Forwarder.close().
  const workersStopped = p.stdout().split('\n').filter((l) => l.includes('"msg":"pgbell stopped"') && l.includes('"worker"')).length;
  expect({ workersStopped, exited }).toEqual({ workersStopped: 2, exited: true });
});
