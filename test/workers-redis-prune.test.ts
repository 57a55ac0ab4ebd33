/**
 * `pgbell start --workers N` with PGBELL_FANOUT=redis prunes tombstones. A worker fed by its
 * primary leaves pruning to it, but in Redis mode the primary has no database at all: the
 * workers prune, or nobody would ("AlertTombstone" would grow for ever and
 * TOMBSTONE_RETENTION_HOURS would do nothing), as one process (--workers 1) does at start.
 */
import { afterAll, expect, it } from 'vitest';
import { cleanEnv, launch, type Launched } from './helpers/cli.js';
import { SECRET } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { until } from './helpers/tab.js';
import { haveRedis, REDIS_URL } from './helpers/redis.js';


const running: Launched[] = [];
afterAll(() => {
  for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
});

async function oldTombstone(): Promise<string> {
  const db = await freshDatabase(['pr0']);
  await query(db, `INSERT INTO "Alert" (id, "userId", title) VALUES ('gone', 'pr0', 'x')`);
  await query(db, `DELETE FROM "Alert" WHERE id = 'gone'`);
  await query(db, `UPDATE pgbell."AlertTombstone" SET "deletedAt" = now() - interval '500 hours'`);
  return db;
}
const tombstones = async (db: string) => (await query<{ n: number }>(db, `SELECT count(*)::int AS n FROM pgbell."AlertTombstone"`))[0]!.n;

async function runFor(db: string, workers: string): Promise<number> {
  const p = launch(['start', '--workers', workers], cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PORT: '0', HOST: '127.0.0.1', LOG_FORMAT: 'json', PGBELL_FANOUT: 'redis', REDIS_URL }));
  running.push(p);
  await p.waitFor(/pgbell listening on/, 60_000);
  await until(async () => (await tombstones(db)) === 0, 5000, 'the old tombstone pruned').catch(() => {});
  const n = await tombstones(db);
  p.child.kill('SIGTERM');
  await p.exited;
  return n;
}

it.skipIf(!haveRedis)('control: one process in Redis mode prunes a tombstone past TOMBSTONE_RETENTION_HOURS at start', async () => {
  const db = await oldTombstone();
  expect(await tombstones(db)).toBe(1);
  expect(await runFor(db, '1')).toBe(0);
});

it.skipIf(!haveRedis)('--workers 2 in Redis mode prunes it too', async () => {
  const db = await oldTombstone();
  expect(await tombstones(db)).toBe(1);
  expect(await runFor(db, '2')).toBe(0);
});
