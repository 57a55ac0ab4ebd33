/**
 * examples/nextjs end to end, the seed's stack: the real `next build` and `next start` of a Next.js
 * App Router app on its own port, pgbell's daemon beside it, Debian's Chromium signing in with the
 * app's HMAC-signed session cookie, an alert inserted by psql raising the navbar badge, the
 * category filter, and sign-out closing the socket.
 * Needs the example's own install (`npm ci` in examples/nextjs; `.ci/run` does it): without it
 * this file is skipped with one line, unless PGBELL_REQUIRE_NEXTJS=1.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/embedded.js';
import { haveBrowser, launchChromium } from './helpers/browser.js';
import { health, SECRET, startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { createUser, freshDatabase, psql } from './helpers/pg.js';
import { until } from './helpers/tab.js';

const exec = promisify(execFile);
const APP = path.resolve('examples/nextjs');
const installed = existsSync(path.join(APP, 'node_modules', 'next', 'package.json'));
if (!installed) {
  if (process.env.PGBELL_REQUIRE_NEXTJS === '1') throw new Error('PGBELL_REQUIRE_NEXTJS=1 but examples/nextjs has no node_modules: run `npm ci` in examples/nextjs');
  console.warn('Next.js example tests skipped: run `npm ci` in examples/nextjs first');
}

let db: string;
let daemon: TestDaemon;
let app: ChildProcess | undefined;
let appUrl: string;
let browser: Browser;

/** Waits for the navbar badge to read `n`. */
const badge = (page: Page, n: string) =>
  page.waitForFunction((want) => (globalThis as unknown as { document: { querySelector(s: string): { textContent: string } | null } }).document.querySelector('[data-testid=badge]')?.textContent === want, n, { timeout: 10_000 });

describe.skipIf(!installed || !haveBrowser)('examples/nextjs in Chromium', () => {
  beforeAll(async () => {
    db = await freshDatabase();
    await createUser(db, 'nina', 'nina@example.test');
    daemon = await startTestDaemon(db);
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NEXT_TELEMETRY_DISABLED: '1',
      DATABASE_URL: db,
      SESSION_SECRET: SECRET,
      COOKIE_SECRET: 'cookie-secret-cookie-secret-cookie-secret',
      PGBELL_PUBLIC_URL: daemon.url,
    };
    await exec('npx', ['next', 'build'], { cwd: APP, env, timeout: 240_000, maxBuffer: 1 << 24 });
    const port = await freePort();
    appUrl = `http://127.0.0.1:${port}`;
    app = spawn('npx', ['next', 'start', '-p', String(port), '-H', '127.0.0.1'], { cwd: APP, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    app.stdout!.on('data', (b) => (out += String(b)));
    app.stderr!.on('data', (b) => (out += String(b)));
    await until(async () => (await fetch(appUrl).then((r) => r.status, () => 0)) === 200, 60_000, `next start to answer (${out})`);
    browser = await launchChromium();
  }, 300_000);
  afterAll(async () => {
    await browser?.close();
    // `npx` runs next in a child: end the whole group.
    if (app?.pid) process.kill(-app.pid, 'SIGTERM');
    await daemon?.stop();
  });

  it('signs in with the app\'s cookie, a psql INSERT raises the badge, the filter narrows it, and sign-out closes the socket', async () => {
    const page = await browser.newPage();
    const consoleLines: string[] = [];
    page.on('console', (m) => consoleLines.push(m.text()));
    page.on('pageerror', (e) => consoleLines.push(e.message));
    await page.goto(appUrl);
    await page.fill('[data-testid=email]', 'nina@example.test');
    await page.click('[data-testid=signin]');
    await page.waitForSelector('[data-testid=status][data-status=live]', { timeout: 20_000 }).catch(async (err: Error) => {
      throw new Error(`${err.message}; status ${await page.getAttribute('[data-testid=status]', 'data-status').catch(() => '?')}; console: ${consoleLines.join(' | ')}`);
    });
    expect(await page.textContent('[data-testid=who]')).toBe('nina@example.test');
    expect(await page.textContent('[data-testid=badge]')).toBe('0');
    expect((await health(daemon.http)).body.connections).toBe(1);

    await psql(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('nina', 'billing', 'Invoice ready')`);
    await badge(page, '1');
    await page.click('[data-testid=bell]');
    expect(await page.textContent('[data-testid=dropdown]')).toContain('Invoice ready');

    // The category filter: the socket now carries security alerts only, and counts only those.
    await page.selectOption('[data-testid=category]', 'security');
    await badge(page, '0');
    await psql(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('nina', 'billing', 'Second invoice'), ('nina', 'security', 'New sign-in')`);
    await badge(page, '1');
    expect(await page.textContent('[data-testid=dropdown]')).toContain('New sign-in');
    expect(await page.textContent('[data-testid=dropdown]')).not.toContain('Second invoice');

    // The read side is the app's own route: the token route answers only with the cookie.
    const token = await page.evaluate(() => fetch('/api/pgbell-token').then((r) => r.status));
    expect(token).toBe(200);

    await page.click('[data-testid=signout]');
    await page.waitForSelector('[data-testid=email]', { timeout: 10_000 });
    await until(async () => (await health(daemon.http)).body.connections === 0, 10_000, 'the socket to close after sign-out');
    expect(await page.evaluate(() => fetch('/api/pgbell-token').then((r) => r.status))).toBe(401);
    await page.close();
  }, 90_000);
});
