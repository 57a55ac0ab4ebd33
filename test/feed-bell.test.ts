/**
 * The feed in <NotificationBell />, in Debian's Chromium, against a real daemon and Postgres:
 * opening the bell clears the unseen badge while unread stays (in the database too); archiving
 * an alert in one tab takes it out of another tab's list live, with sockets of their own (two
 * browser contexts) and with tabs that share one socket (a follower archives, through the
 * leader); the Archive action is reachable by keyboard. The page is test/pages/feed-bell.tsx,
 * served with every /alerts route on its own origin, as an app mounts them.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secretKey, signSessionToken } from '../src/auth.js';
import { createDb, type Db } from '../src/db/connect.js';
import { alertsHandler } from '../src/server/alerts.js';
import { handleWithFetch } from '../src/server/node.js';
import { health, SECRET, startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { haveBrowser, launchChromium } from './helpers/browser.js';
import { freshDatabase, query } from './helpers/pg.js';
import { until } from './helpers/tab.js';

let db: string;
let appDb: Db;
let daemon: TestDaemon;
let browser: Browser;
let server: http.Server;
let base: string;

async function startPage(): Promise<void> {
  const built = await build({ entryPoints: [path.resolve('test/pages/feed-bell.tsx')], bundle: true, write: false, format: 'iife', target: 'es2020', jsx: 'automatic', define: { 'process.env.NODE_ENV': '"production"' }, logLevel: 'warning' });
  const js = built.outputFiles[0]!.text;
  const key = secretKey(SECRET);
  const alerts = alertsHandler({ db: appDb, key, allowedOrigins: [], maxReplay: 10_000 });
  server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/alerts' || url.pathname.startsWith('/alerts/')) return void handleWithFetch(req, res, alerts).catch(() => res.destroy());
    const send = (type: string, body: string) => res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
    if (url.pathname === '/') return send('text/html; charset=utf-8', '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>feed</title><link rel="icon" href="data:,"></head><body><div id="root"></div><script src="/bell.js"></script></body></html>');
    if (url.pathname === '/bell.js') return send('text/javascript', js);
    if (url.pathname === '/token') return void signSessionToken(key, { userId: url.searchParams.get('user') ?? '', email: null, ttlSeconds: 3600 }).then((token) => send('application/json', JSON.stringify({ token })));
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

async function open(page: Page, user: string, share = true): Promise<Page> {
  await page.goto(`${base}?${new URLSearchParams({ user, ws: daemon.url, share: share ? '1' : '0' })}`);
  await page.locator('[data-testid="status"][data-status="live"]').first().waitFor({ timeout: 10_000 });
  return page;
}

const label = (page: Page) => page.getByTestId('bell').getAttribute('aria-label');
const listed = (page: Page) => page.getByTestId('alert-item').evaluateAll((els) => els.map((e: any) => e.getAttribute('data-id') as string));
const focusedId = (page: Page) => page.evaluate(() => ({ testid: (globalThis as any).document.activeElement?.getAttribute('data-testid') as string | null, id: (globalThis as any).document.activeElement?.getAttribute('data-id') as string | null }));

async function userWith(user: string, n: number): Promise<string[]> {
  await query(db, `INSERT INTO "User" (id, email) VALUES ($1, $1 || '@example.test')`, [user]);
  await query(db, `INSERT INTO "Alert" ("userId", type, title, "createdAt") SELECT $1, (ARRAY['billing','security'])[1 + i % 2], 'alert ' || i, now() - make_interval(secs => i) FROM generate_series(1, $2::int) i`, [user, n]);
  return (await query(db, `SELECT id FROM "Alert" WHERE "userId" = $1 ORDER BY "createdAt" DESC, id DESC`, [user])).map((r) => r.id as string);
}

async function counts(user: string): Promise<{ unread: number; unseen: number; archived: number }> {
  const r = (await query(db, `SELECT count(*) FILTER (WHERE NOT read AND NOT archived)::int AS unread, count(*) FILTER (WHERE NOT read AND NOT seen AND NOT archived)::int AS unseen, count(*) FILTER (WHERE archived)::int AS archived FROM pgbell."Alert" WHERE "userId" = $1`, [user]))[0]!;
  return { unread: r.unread, unseen: r.unseen, archived: r.archived };
}

describe.skipIf(!haveBrowser)('the feed in <NotificationBell /> (Chromium)', () => {
  beforeAll(async () => {
    db = await freshDatabase();
    appDb = createDb(db);
    daemon = await startTestDaemon(db);
    await startPage();
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => server?.close(r));
    await daemon?.stop();
    await appDb?.destroy();
  });

  it('opening the bell clears the unseen badge and unread stays; a new alert while closed is new again', async () => {
    await userWith('ivy', 3);
    const context = await browser.newContext();
    const page = await open(await context.newPage(), 'ivy');
    await page.getByTestId('bell-count').filter({ hasText: '3' }).waitFor({ timeout: 5000 });
    expect(await label(page)).toBe('Notifications: 3 new, 3 unread, live');
    await page.getByTestId('bell').click();
    await page.getByTestId('bell-count').filter({ hasText: '0' }).waitFor({ timeout: 5000 });
    expect(await label(page)).toBe('Notifications: 0 new, 3 unread, live');
    await until(async () => (await counts('ivy')).unseen === 0, 5000, 'seen in the database');
    expect(await counts('ivy')).toEqual({ unread: 3, unseen: 0, archived: 0 });
    // The filter's counts are the badge's (unseen): none new.
    expect(await page.getByTestId('filter').locator('option').allTextContents()).toEqual(['All categories (0)', 'billing (0)', 'security (0)']);

    await page.getByTestId('bell').click(); // closed: what arrives now is not seen
    await page.getByTestId('dropdown').waitFor({ state: 'detached' });
    await query(db, `INSERT INTO "Alert" ("userId", type, title) VALUES ('ivy', 'billing', 'while closed')`);
    await page.getByTestId('bell-count').filter({ hasText: '1' }).waitFor({ timeout: 5000 });
    expect(await label(page)).toBe('Notifications: 1 new, 4 unread, live');
    // A second tab (its own socket) shows the same, and a reload keeps it: the state is the server's.
    const other = await open(await (await browser.newContext()).newPage(), 'ivy', false);
    await other.getByTestId('bell-count').filter({ hasText: '1' }).waitFor({ timeout: 5000 });
    await page.getByTestId('bell').click();
    await other.getByTestId('bell-count').filter({ hasText: '0' }).waitFor({ timeout: 5000 });
    expect(await label(other)).toBe('Notifications: 0 new, 4 unread, live');
    await other.context().close();
    await context.close();
  });

  it('archive in tab 1 (its own socket): tab 2 loses the alert live; the Archive button and Delete reach it by keyboard', async () => {
    const ids = await userWith('jay', 4);
    const [c1, c2] = [await browser.newContext(), await browser.newContext()];
    const [t1, t2] = [await open(await c1.newPage(), 'jay', false), await open(await c2.newPage(), 'jay', false)];
    for (const t of [t1, t2]) {
      await t.getByTestId('bell').click();
      await t.getByTestId('alert-item').first().waitFor();
    }
    expect(await listed(t2)).toEqual(ids);

    // A click on Archive.
    const t0 = Date.now();
    await t1.locator(`[data-testid="alert-item"][data-id="${ids[1]}"] [data-testid="archive"]`).click();
    await t2.locator(`[data-testid="alert-item"][data-id="${ids[1]}"]`).waitFor({ state: 'detached', timeout: 5000 });
    console.log(`archive: gone from the other tab's list after ${Date.now() - t0} ms`);
    expect(await listed(t1)).toEqual([ids[0], ids[2], ids[3]]);
    expect(await listed(t2)).toEqual([ids[0], ids[2], ids[3]]);
    expect(await t1.getByRole('button', { name: /^Archive: alert/ }).count()).toBe(3);

    // By keyboard: Tab from the first row reaches its Archive button; Enter archives it, and focus
    // goes to the alert now in its place (Escape still closes the popup from there).
    await t1.getByTestId('alert-item').first().focus();
    for (let i = 0; i < 4 && (await focusedId(t1)).testid !== 'archive'; i++) await t1.keyboard.press('Tab');
    expect(await t1.evaluate(() => (globalThis as any).document.activeElement?.getAttribute('aria-label'))).toBe('Archive: alert 1');
    await t1.keyboard.press('Enter');
    await t2.locator(`[data-testid="alert-item"][data-id="${ids[0]}"]`).waitFor({ state: 'detached', timeout: 5000 });
    expect(await focusedId(t1)).toEqual({ testid: 'alert-item', id: ids[2] });
    // Delete on a row archives it too.
    await t1.keyboard.press('Delete');
    await t2.locator(`[data-testid="alert-item"][data-id="${ids[2]}"]`).waitFor({ state: 'detached', timeout: 5000 });
    expect(await focusedId(t1)).toEqual({ testid: 'alert-item', id: ids[3] });
    expect(await listed(t2)).toEqual([ids[3]]);
    expect(await counts('jay')).toMatchObject({ archived: 3, unread: 1 });
    await t1.keyboard.press('Escape');
    await t1.getByTestId('dropdown').waitFor({ state: 'detached' });
    expect((await focusedId(t1)).testid).toBe('bell');

    // Unarchived (a cron job's SQL): back in both lists, in its place.
    await query(db, `SELECT pgbell.unarchive('jay', ARRAY[$1])`, [ids[1]]);
    await until(async () => (await listed(t2)).join() === [ids[1], ids[3]].join(), 5000, 'unarchived, back in tab 2');
    await c1.close();
    await c2.close();
  });

  it('tabs that share one socket: a follower archives (through the leader), and every tab loses the alert', async () => {
    const ids = await userWith('kim', 3);
    const context = await browser.newContext();
    const tabs = [await open(await context.newPage(), 'kim'), await open(await context.newPage(), 'kim')];
    await until(async () => (await health(daemon.http)).body.connections === 1, 5000, 'one socket for both tabs');
    for (const t of tabs) {
      await t.getByTestId('bell').click();
      await t.getByTestId('alert-item').first().waitFor();
    }
    // One tab holds the socket, the other is its follower: each archives one, so the follower's
    // goes through the leader whichever of them leads.
    for (const [i, t] of tabs.entries()) {
      await t.locator(`[data-testid="alert-item"][data-id="${ids[i]}"] [data-testid="archive"]`).click();
      for (const u of tabs) await u.locator(`[data-testid="alert-item"][data-id="${ids[i]}"]`).waitFor({ state: 'detached', timeout: 5000 });
    }
    for (const t of tabs) expect(await listed(t)).toEqual([ids[2]]);
    expect(await counts('kim')).toEqual({ unread: 1, unseen: 0, archived: 2 });
    for (const t of tabs) expect(await label(t)).toBe('Notifications: 0 new, 1 unread, live');
    await context.close();
  });
});
