/**
 * pgbell/react's <NotificationBell /> on the demo page, in Debian's Chromium: axe-core (the npm
 * package's source, injected into the page) finds no violation of any impact with the popup
 * closed and open (with each row's Mark read and Archive), in the light and the dark scheme; and
 * the bell works from the keyboard alone.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secretKey } from '../src/auth.js';
import { createDb, type Db } from '../src/db/connect.js';
import { startDemoServer, type DemoServer } from '../src/demo/server.js';
import { captureLogger, SECRET, startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { haveBrowser, launchChromium } from './helpers/browser.js';
import { createUser, freshDatabase, query } from './helpers/pg.js';

const USER = { id: 'bell-user', email: 'bell@pgbell.dev' };
let db: string;
let appDb: Db;
let daemon: TestDaemon;
let demo: DemoServer;
let browser: Browser;
let axeSource: string;

interface Violation {
  id: string;
  impact: string;
  help: string;
  nodes: string[];
}

/** axe-core's violations on the page as it is now, every impact. */
async function axe(page: Page): Promise<Violation[]> {
  if (!(await page.evaluate(() => 'axe' in globalThis))) await page.addScriptTag({ content: axeSource });
  return page.evaluate(async () => {
    const r = await (globalThis as any).axe.run((globalThis as any).document, { resultTypes: ['violations'] });
    if (r.passes.length === 0) throw new Error('axe checked nothing');
    return r.violations.map((v: any) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n: any) => n.target.join(' ')) }));
  });
}

/** The three alerts, new (unread and unseen): each test starts from them. */
async function freshAlerts(): Promise<void> {
  await query(db, `DELETE FROM "Alert" WHERE "userId" = $1`, [USER.id]);
  await query(db, `INSERT INTO "Alert" ("userId", type, title, message, link) VALUES ($1, 'billing', 'Invoice ready', 'March', '/invoices/3'), ($1, 'security', 'New sign-in', 'From Firefox', NULL), ($1, 'general', 'Welcome', '', NULL)`, [USER.id]);
}

const focused = (page: Page) => page.evaluate(() => {
  const el = (globalThis as any).document.activeElement;
  return { testid: el?.getAttribute('data-testid') as string | null, id: el?.getAttribute('data-id') as string | null };
});

describe.skipIf(!haveBrowser)('<NotificationBell /> in Chromium', () => {
  beforeAll(async () => {
    axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
    db = await freshDatabase();
    await createUser(db, USER.id, USER.email);
    daemon = await startTestDaemon(db);
    appDb = createDb(db);
    demo = await startDemoServer({ port: 0, host: '127.0.0.1', db: appDb, key: secretKey(SECRET), wsUrl: daemon.url, user: USER, psql: 'psql -c "INSERT …"', maxReplay: 10_000, log: captureLogger().log });
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await demo?.close();
    await daemon?.stop();
    await appDb?.destroy();
  });

  for (const scheme of ['light', 'dark'] as const) {
    it(`axe-core: 0 violations with the bell closed and open (${scheme})`, async () => {
      await freshAlerts();
      const context = await browser.newContext({ colorScheme: scheme });
      const page = await context.newPage();
      await page.goto(demo.url);
      await page.getByTestId('ws-status').filter({ hasText: 'live' }).waitFor({ timeout: 10_000 });
      await page.getByTestId('bell-count').filter({ hasText: '3' }).waitFor({ timeout: 5000 });
      expect(await axe(page)).toEqual([]);
      await page.getByTestId('bell').click();
      await page.getByTestId('alert-item').first().waitFor();
      expect(await axe(page)).toEqual([]);
      // A row read, a filter chosen: still none.
      await page.getByTestId('mark-read').first().click();
      await page.getByTestId('filter').selectOption('billing');
      await page.getByTestId('alert-item').first().waitFor();
      expect(await axe(page)).toEqual([]);
      await context.close();
    });
  }

  it('keyboard only: Tab to the bell, Enter opens onto the first alert, arrows move, Enter marks read, Escape closes and gives focus back', async () => {
    await freshAlerts();
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(demo.url);
    await page.getByTestId('ws-status').filter({ hasText: 'live' }).waitFor({ timeout: 10_000 });
    await page.getByTestId('bell-count').filter({ hasText: '3' }).waitFor({ timeout: 5000 });
    for (let i = 0; i < 10 && (await focused(page)).testid !== 'bell'; i++) await page.keyboard.press('Tab');
    expect((await focused(page)).testid).toBe('bell');
    expect(await page.getByTestId('bell').getAttribute('aria-expanded')).toBe('false');
    // The badge counts unseen alerts; the name says both counts.
    expect(await page.getByTestId('bell').getAttribute('aria-label')).toBe('Notifications: 3 new, 3 unread, live');

    await page.keyboard.press('Enter');
    await page.getByTestId('dropdown').waitFor();
    expect(await page.getByTestId('bell').getAttribute('aria-expanded')).toBe('true');
    const ids = await page.getByTestId('alert-item').evaluateAll((els) => els.map((e: any) => e.getAttribute('data-id') as string));
    expect(ids).toHaveLength(3);
    expect((await focused(page)).id).toBe(ids[0]);
    await page.keyboard.press('ArrowDown');
    expect((await focused(page)).id).toBe(ids[1]);
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown'); // stays on the last
    expect((await focused(page)).id).toBe(ids[2]);
    await page.keyboard.press('Home');
    expect((await focused(page)).id).toBe(ids[0]);
    await page.keyboard.press('End');
    await page.keyboard.press('ArrowUp');
    expect((await focused(page)).id).toBe(ids[1]);
    // Enter on a row marks it read. (Opening it marked them seen: test/feed-bell.test.ts.)
    await page.keyboard.press('Enter');
    await page.locator('[data-testid="bell"][aria-label*=" 2 unread,"]').waitFor({ timeout: 5000 });
    expect((await query(db, `SELECT read FROM "Alert" WHERE id = $1`, [ids[1]]))[0]!.read).toBe(true);
    // One tab stop in the list: Tab leaves it for what follows.
    expect(await page.getByTestId('alert-item').evaluateAll((els) => els.filter((e: any) => e.getAttribute('tabindex') === '0').length)).toBe(1);

    await page.keyboard.press('Escape');
    await page.getByTestId('dropdown').waitFor({ state: 'detached' });
    expect((await focused(page)).testid).toBe('bell');
    expect(await page.getByTestId('bell').getAttribute('aria-expanded')).toBe('false');
    // ArrowDown opens it too; Escape from the filter closes it as well.
    await page.keyboard.press('ArrowDown');
    await page.getByTestId('dropdown').waitFor();
    await page.getByTestId('filter').focus();
    await page.keyboard.press('Escape');
    await page.getByTestId('dropdown').waitFor({ state: 'detached' });
    expect((await focused(page)).testid).toBe('bell');
    await context.close();
  });
});
