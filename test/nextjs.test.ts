/**
 * examples/nextjs end to end, the seed's stack, run as the README says: its "Adding it to a
 * Next.js app" shell block, pasted as written into bash in a copy of this checkout, with only
 * what a person would have exported (DATABASE_URL and SESSION_SECRET, and here a free PORT for
 * the daemon and PGBELL_PUBLIC_URL pointing at it). That builds pgbell, migrates, starts the
 * daemon, and runs the real `next build` and `next start` of a Next.js App Router app on :3007.
 * Then: the app signs in with its HMAC-signed session cookie and mints a pgbell token, and in
 * Debian's Chromium an alert inserted by psql raises the navbar badge, the category filter
 * narrows it, and sign-out closes the socket.
 * Needs the example's own install (`npm ci` in examples/nextjs; `.ci/run` does it): without it
 * this file is skipped with one line, unless PGBELL_REQUIRE_NEXTJS=1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/cli/embedded.js';
import { haveBrowser, launchChromium } from './helpers/browser.js';
import { copyCheckout } from './helpers/checkout.js';
import { TestClient } from './helpers/client.js';
import { cleanEnv, run } from './helpers/cli.js';
import { health, SECRET } from './helpers/daemon.js';
import { shellBlocks } from './helpers/markdown.js';
import { freshDatabase, psql } from './helpers/pg.js';
import { until } from './helpers/tab.js';

const APP = path.resolve('examples/nextjs');
const installed = existsSync(path.join(APP, 'node_modules', 'next', 'package.json'));
if (!installed) {
  if (process.env.PGBELL_REQUIRE_NEXTJS === '1') throw new Error('PGBELL_REQUIRE_NEXTJS=1 but examples/nextjs has no node_modules: run `npm ci` in examples/nextjs');
  console.warn('Next.js example tests skipped: run `npm ci` in examples/nextjs first');
}
const block = shellBlocks('README.md').find((b) => b.heading === 'Adding it to a Next.js app');
/** The app's port, as the example's `npm start` has it. */
const APP_PORT = 3007;
/** The user the block creates. */
const EMAIL = 'ada@example.com';

let dir: string;
let db: string;
let env: NodeJS.ProcessEnv;
let daemonHttp: string;
let shell: ChildProcess | undefined;
let out = '';
const appUrl = `http://127.0.0.1:${APP_PORT}`;
let browser: Browser | undefined;

/** Waits for the navbar badge to read `n`. */
const badge = (page: Page, n: string) =>
  page.waitForFunction((want) => (globalThis as unknown as { document: { querySelector(s: string): { textContent: string } | null } }).document.querySelector('[data-testid=bell-count]')?.textContent === want, n, { timeout: 10_000 });

const portFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, () => srv.close(() => resolve(true)));
  });

describe.skipIf(!installed)('examples/nextjs, run as the README says', () => {
  beforeAll(async () => {
    expect(block, 'README.md has a shell block under "Adding it to a Next.js app"').toBeDefined();
    if (!(await portFree(APP_PORT))) throw new Error(`port ${APP_PORT}, where the README's \`npm start\` serves the example, is in use`);
    dir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-nextjs-'));
    const checkout = path.join(dir, 'pgbell');
    await copyCheckout(checkout, ['node_modules', 'dist', 'examples/nextjs/node_modules']);
    db = await freshDatabase();
    const port = await freePort();
    daemonHttp = `http://127.0.0.1:${port}`;
    env = {
      ...cleanEnv(),
      DATABASE_URL: db,
      SESSION_SECRET: SECRET,
      PORT: String(port),
      PGBELL_PUBLIC_URL: `ws://127.0.0.1:${port}/`,
      NEXT_TELEMETRY_DISABLED: '1',
      // npm's own chatter, and its cache first: the copy's packages are installed already.
      npm_config_prefer_offline: 'true',
      npm_config_audit: 'false',
      npm_config_fund: 'false',
      npm_config_update_notifier: 'false',
    };
    // Its own process group: the block leaves the daemon in the background and the app in front.
    shell = spawn('bash', ['-c', block!.text], { cwd: checkout, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    shell.stdout!.on('data', (b) => (out += String(b)));
    shell.stderr!.on('data', (b) => (out += String(b)));
    const answers = async (url: string) => (await fetch(url).then((r) => r.status, () => 0)) === 200;
    await until(async () => (await answers(`${daemonHttp}/health`)) && (await answers(appUrl)), 480_000, 'the daemon and `npm start` to answer').catch((err: Error) => {
      throw new Error(`${err.message}; the block's output:\n${out.slice(-4000)}`);
    });
  }, 600_000);
  afterAll(async () => {
    await browser?.close();
    if (shell?.pid) {
      process.kill(-shell.pid, 'SIGTERM');
      await new Promise((r) => shell!.once('close', r));
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it.skipIf(!haveBrowser)('in Chromium: signs in with the app\'s cookie, a psql INSERT raises the badge, axe finds nothing with the bell closed and open, the filter narrows it, and sign-out closes the socket', async () => {
    browser = await launchChromium();
    const page = await browser.newPage();
    const consoleLines: string[] = [];
    page.on('console', (m) => consoleLines.push(m.text()));
    page.on('pageerror', (e) => consoleLines.push(e.message));
    await page.goto(appUrl);
    await page.fill('[data-testid=email]', 'ada@example.com');
    await page.click('[data-testid=signin]');
    await page.waitForSelector('[data-testid=status][data-status=live]', { timeout: 20_000 }).catch(async (err: Error) => {
      throw new Error(`${err.message}; status ${await page.getAttribute('[data-testid=status]', 'data-status').catch(() => '?')}; console: ${consoleLines.join(' | ')}`);
    });
    expect(await page.textContent('[data-testid=who]')).toBe('ada@example.com');
    expect(await page.textContent('[data-testid=bell-count]')).toBe('0');
    expect((await health(daemonHttp)).body.connections).toBe(1);

    await psql(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('ada', 'billing', 'Invoice ready')`);
    await badge(page, '1');
    // pgbell/react's <NotificationBell />: axe-core (injected from the npm package) finds no
    // violation of any impact with it closed and open.
    await page.addScriptTag({ content: await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8') });
    const axe = () => page.evaluate(async () => ((await (globalThis as any).axe.run((globalThis as any).document, { resultTypes: ['violations'] })).violations as any[]).map((v) => `${v.id}: ${v.help}`));
    expect(await axe()).toEqual([]);
    await page.click('[data-testid=bell]');
    expect(await page.textContent('[data-testid=dropdown]')).toContain('Invoice ready');
    expect(await axe()).toEqual([]);

    // The category filter: the socket now carries security alerts only, and counts only those.
    await page.selectOption('[data-testid=filter]', 'security');
    await badge(page, '0');
    await psql(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('ada', 'billing', 'Second invoice'), ('ada', 'security', 'New sign-in')`);
    await badge(page, '1');
    expect(await page.textContent('[data-testid=dropdown]')).toContain('New sign-in');
    expect(await page.textContent('[data-testid=dropdown]')).not.toContain('Second invoice');

    // The read side is the app's own route: the token route answers only with the cookie.
    const token = await page.evaluate(() => fetch('/api/pgbell-token').then((r) => r.status));
    expect(token).toBe(200);

    await page.click('[data-testid=signout]');
    await page.waitForSelector('[data-testid=email]', { timeout: 10_000 });
    await until(async () => (await health(daemonHttp)).body.connections === 0, 10_000, 'the socket to close after sign-out');
    expect(await page.evaluate(() => fetch('/api/pgbell-token').then((r) => r.status))).toBe(401);
    await page.close();
  }, 90_000);

  it('the app gets its environment: sign-in sets the session cookie, the token route mints a pgbell token, and `npx pgbell send` reaches the socket', async () => {
    const signin = await fetch(`${appUrl}/api/signin`, { method: 'POST', body: new URLSearchParams({ email: EMAIL }), redirect: 'manual' });
    expect(signin.status).toBe(303);
    expect(signin.headers.get('location')).toBe('/');
    const cookie = signin.headers.get('set-cookie')!.split(';')[0]!;
    expect(cookie).toMatch(/^session=/);
    const minted = await fetch(`${appUrl}/api/pgbell-token`, { headers: { cookie } });
    expect(minted.status).toBe(200);
    const { token } = (await minted.json()) as { token: string };
    const c = await TestClient.ready(daemonHttp.replace(/^http/, 'ws') + '/', token);
    const sent = await run(['send', EMAIL], cleanEnv({ DATABASE_URL: db }));
    expect(sent.code).toBe(0);
    await c.count('notification', 3);
    c.close();
    expect((await fetch(`${appUrl}/api/pgbell-token`)).status).toBe(401);
  });
});
