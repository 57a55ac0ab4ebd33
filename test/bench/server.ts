/**
 * The Postgres server the benchmarks run against: BENCH_DATABASE_URL if set (they create
 * scratch databases on it), otherwise embedded Postgres in a temp dir, removed by stop().
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres } from '../../src/cli/embedded.js';

export async function benchServer(): Promise<{ url: string; stop: () => Promise<void> }> {
  const given = process.env.BENCH_DATABASE_URL;
  if (given) return { url: given, stop: async () => {} };
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-bench-'));
  await chmod(dir, 0o755);
  // pg_stat_statements: the report's database cost per target.
  const server = await startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), password: 'bench', persistent: false, settings: { shared_preload_libraries: 'pg_stat_statements' } });
  return {
    url: server.url,
    stop: async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
