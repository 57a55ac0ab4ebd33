/**
 * The demo bell in a real browser: Debian's Chromium (never a downloaded one) driven by
 * playwright-core. Without Chromium these tests are skipped with one line, unless
 * PGBELL_REQUIRE_BROWSER=1 (set by .ci/run), which makes a missing browser a failure.
 */
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secretKey } from '../src/auth.js';
import { createDb, type Db } from '../src/db/connect.js';
import { startDemoServer, type DemoServer } from '../src/demo/server.js';
import { captureLogger, health, SECRET, startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { haveBrowser, launchChromium } from './helpers/browser.js';
import { createUser, freshDatabase, psql, query } from './helpers/pg.js';


const USER = { id: 'demo-user', email: 'demo@pgbell.dev' };
let db: string;
let appDb: Db;
let daemon: TestDaemon;
let demo: DemoServer;
let browser: Browser;
let port: number;

describe.skipIf(!haveBrowser)('demo bell in Chromium', () => {
  beforeAll(async () => {
    db = await freshDatabase();
    await createUser(db, USER.id, USER.email);
    daemon = await startTestDaemon(db);
    port = daemon.port;
    appDb = createDb(db);
    demo = await startDemoServer({
      port: 0,
      host: '127.0.0.1',
      db: appDb,
      key: secretKey(SECRET),
      wsUrl: daemon.url,
      user: USER,
      psql: `psql "postgres://…/app" -c "INSERT INTO \\"Alert\\" (\\"userId\\", title, message) VALUES ('demo-user', 'Hello from psql', 'Inserted by hand')"`,
      maxReplay: 10_000,
      log: captureLogger().log,
    });
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await demo?.close();
    await daemon?.stop();
    await appDb?.destroy();
  });

  async function open(poll = 60_000): Promise<{ page: Page; console: string[] }> {
    const page = await browser.newPage();
    const lines: string[] = [];
    page.on('console', (m) => lines.push(m.text()));
    await page.goto(`http://127.0.0.1:${demo.port}/?poll=${poll}`);
    await page.getByTestId('ws-status').filter({ hasText: 'live' }).waitFor({ timeout: 10_000 });
    return { page, console: lines };
  }

  const count = async (page: Page) => Number(await page.getByTestId('bell-count').textContent());

  it('an INSERT from psql raises the badge and shows the alert in under a second, with the seed\'s console lines', async () => {
    const { page, console: lines } = await open();
    const before = await count(page);
    await page.getByTestId('bell').click();
    await psql(db, `INSERT INTO "Alert" ("userId", title, message) VALUES ('${USER.id}', 'Hello from psql', 'Inserted by hand')`);
    const t0 = Date.now();
    await page.getByTestId('bell-count').filter({ hasText: String(before + 1) }).waitFor({ timeout: 1000 });
    await page.getByTestId('alert-item').filter({ hasText: 'Hello from psql' }).waitFor({ timeout: 1000 - (Date.now() - t0) });
    expect(lines).toEqual(expect.arrayContaining(['✅ WebSocket connected, authenticating...', `✅ WebSocket authenticated: ${USER.email}`, '📬 Real-time notification received: Hello from psql']));
    // Only the seed's lines: no 404 for a favicon, no other error.
    expect(lines.filter((l) => !/^(✅|📬|🔌|♻️)/u.test(l))).toEqual([]);
    // Two components use the hook (the bell and the page title): one socket for the page.
    expect(await page.title()).toBe(`(${before + 1}) pgbell demo`);
    expect((await health(daemon.http)).body.connections).toBe(1);

    // PGBELL_SCREENSHOT_DIR=docs refreshes the README's picture.
    const dir = process.env.PGBELL_SCREENSHOT_DIR ?? path.join(os.tmpdir(), 'pgbell-screenshots');
    await mkdir(dir, { recursive: true });
    await page.screenshot({ path: path.join(dir, 'demo-bell.png') });
    await page.close();
  });

  it('two tabs: opening the bell in one clears the new badge in both; marking read drops the unread count in the other; mark all read empties both', async () => {
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('${USER.id}', 'two tabs A'), ('${USER.id}', 'two tabs B')`);
    const [a, b] = [(await open()).page, (await open()).page];
    // The badge counts new (unseen) alerts, and opening the bell sees them: the unread count
    // is in the button's name.
    const unread = async (page: Page) => Number(/(\d+) unread/.exec((await page.getByTestId('bell').getAttribute('aria-label')) ?? '')?.[1] ?? NaN);
    const n = await unread(a);
    expect(n).toBeGreaterThanOrEqual(2);
    expect(await unread(b)).toBe(n);
    await a.getByTestId('bell').click();
    await expect.poll(() => count(b), { timeout: 5000 }).toBe(0);
    await a.getByTestId('alert-item').filter({ hasText: 'two tabs A' }).getByTestId('mark-read').click();
    await expect.poll(() => unread(b), { timeout: 5000 }).toBe(n - 1);
    await a.getByTestId('mark-all-read').click();
    await expect.poll(() => unread(b), { timeout: 5000 }).toBe(0);
    expect((await query(db, `SELECT count(*)::int AS n FROM "Alert" WHERE "userId" = $1 AND NOT read`, [USER.id]))[0]!.n).toBe(0);
    await a.close();
    await b.close();
  });

  it('daemon stopped → polling, and an alert inserted meanwhile still appears; daemon back → live, no duplicate', async () => {
    const { page } = await open(300);
    await page.getByTestId('bell').click();
    await daemon.stop();
    await page.getByTestId('ws-status').filter({ hasText: 'polling' }).waitFor({ timeout: 10_000 });
    await psql(db, `INSERT INTO "Alert" ("userId", title) VALUES ('${USER.id}', 'arrived by polling')`);
    await page.getByTestId('alert-item').filter({ hasText: 'arrived by polling' }).waitFor({ timeout: 5000 });
    expect(await page.getByTestId('ws-status').textContent()).toBe('polling');

    daemon = await startTestDaemon(db, { port });
    await page.getByTestId('ws-status').filter({ hasText: 'live' }).waitFor({ timeout: 40_000 });
    await psql(db, `INSERT INTO "Alert" ("userId", title) VALUES ('${USER.id}', 'live again')`);
    await page.getByTestId('alert-item').filter({ hasText: 'live again' }).waitFor({ timeout: 5000 });
    const ids = await page.getByTestId('alert-item').evaluateAll((els) => els.map((e: any) => e.getAttribute('data-id') as string));
    expect(new Set(ids).size).toBe(ids.length);
    const truth = (await query(db, `SELECT id FROM "Alert" WHERE "userId" = $1`, [USER.id])).map((r) => r.id);
    expect(new Set(ids)).toEqual(new Set(truth));
    await page.close();
  }, 60_000);

  it('category filter: only the chosen type is listed and counted, live', async () => {
    await query(db, `UPDATE "Alert" SET read = true WHERE "userId" = $1`, [USER.id]);
    const { page } = await open();
    await page.getByTestId('bell').click();
    await page.getByTestId('filter').selectOption('billing');
    await page.getByTestId('bell-count').filter({ hasText: /^0$/ }).waitFor({ timeout: 5000 });
    await psql(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('${USER.id}', 'general', 'a general one'), ('${USER.id}', 'billing', 'an invoice')`);
    await page.getByTestId('alert-item').filter({ hasText: 'an invoice' }).waitFor({ timeout: 5000 });
    await page.getByTestId('bell-count').filter({ hasText: /^1$/ }).waitFor({ timeout: 5000 });
    const titles = await page.getByTestId('alert-item').allTextContents();
    expect(titles.every((t) => t.startsWith('billing'))).toBe(true);
    await page.getByTestId('filter').selectOption('');
    await page.getByTestId('alert-item').filter({ hasText: 'a general one' }).waitFor({ timeout: 5000 });
    await page.getByTestId('bell-count').filter({ hasText: /^2$/ }).waitFor({ timeout: 5000 });
    await page.close();
  });
});
