/**
 * One connection per browser, in Debian's Chromium: the tabs of one user elect a leader with Web
 * Locks and share its socket over BroadcastChannel. Real daemon, real Postgres, real sockets;
 * the pages are test/pages/tabs.ts (pgbell/client) served on one origin.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../src/db/connect.js';
import { health, SECRET, startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { haveBrowser, launchChromium, startTestPage, type TestPageServer } from './helpers/browser.js';
import { freshDatabase, query } from './helpers/pg.js';
import { until } from './helpers/tab.js';

let db: string;
let appDb: Db;
let daemon: TestDaemon;
let pages: TestPageServer;
let browser: Browser;

interface View {
  ids: string[];
  users: string[];
  role: string | null;
  status: string;
  unread: number;
}

const view = (p: Page) => p.evaluate(() => (globalThis as any).__pg.view() as View);
const announced = (p: Page) => p.evaluate(() => ({ ...(globalThis as any).__pg.announced }) as Record<string, number>);
const connections = async () => (await health(daemon.http)).body.connections as number;

async function openTabs(context: BrowserContext, user: string, n: number, extra: Record<string, string | number> = {}): Promise<Page[]> {
  const tabs: Page[] = [];
  for (let i = 0; i < n; i++) {
    const p = await context.newPage();
    await p.goto(pages.url(user, daemon.url, extra));
    tabs.push(p);
  }
  await until(async () => (await Promise.all(tabs.map(view))).every((v) => v.status === 'live'), 15_000, `${n} tabs of ${user} live`);
  return tabs;
}

async function insert(user: string, title: string): Promise<string> {
  const rows = await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ($1, $2) RETURNING id`, [user, title]);
  return String(rows[0]!.id);
}

/** Every tab holds `id` once in its list and announced it exactly once. */
async function heldOnce(tabs: Page[], id: string, timeoutMs: number): Promise<void> {
  await until(async () => (await Promise.all(tabs.map(view))).every((v) => v.ids.includes(id)), timeoutMs, `alert ${id} in every tab`);
  for (const t of tabs) {
    const v = await view(t);
    expect(new Set(v.ids).size).toBe(v.ids.length);
    expect((await announced(t))[id]).toBe(1);
  }
}

describe.skipIf(!haveBrowser)('tabs share one connection (Chromium)', () => {
  beforeAll(async () => {
    db = await freshDatabase(['ann', 'ben', 'cat', 'dan']);
    appDb = createDb(db);
    daemon = await startTestDaemon(db);
    pages = await startTestPage({ db: appDb, secret: SECRET });
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await pages?.close();
    await daemon?.stop();
    await appDb?.destroy();
  });

  it('5 tabs of one user hold 1 socket; an alert reaches each of them once', async () => {
    const context = await browser.newContext();
    const tabs = await openTabs(context, 'ann', 5);
    const roles = (await Promise.all(tabs.map(view))).map((v) => v.role);
    expect(roles.filter((r) => r === 'leader')).toHaveLength(1);
    expect(roles.filter((r) => r === 'follower')).toHaveLength(4);
    expect(await connections()).toBe(1);
    const id = await insert('ann', 'to five tabs');
    await heldOnce(tabs, id, 5000);
    // A follower's action goes through the leader: marked read in the database, and in every tab.
    const follower = tabs[roles.indexOf('follower')]!;
    await follower.evaluate((id) => (globalThis as any).__pg.client.markRead([id]), id);
    await until(async () => (await Promise.all(tabs.map(view))).every((v) => v.unread === 0), 5000, 'unread 0 in every tab');
    // The tabs show it at once; the database once the server has read the leader's `read`
    // message (sent over the socket, which does not answer it).
    await until(async () => (await query(db, `SELECT read FROM "Alert" WHERE id = $1`, [id]))[0]!.read === true, 5000, 'read in the database');
    await context.close();
    await until(async () => (await connections()) === 0, 5000, 'the socket closed with the tabs');
  });

  it('the leader closes: a new leader within 2 s, and an alert inserted during the handover reaches every other tab exactly once', async () => {
    const context = await browser.newContext();
    const tabs = await openTabs(context, 'ben', 5);
    const views = await Promise.all(tabs.map(view));
    const leader = tabs[views.findIndex((v) => v.role === 'leader')]!;
    const rest = tabs.filter((t) => t !== leader);
    const before = await insert('ben', 'before the handover');
    await heldOnce(tabs, before, 5000);

    const t0 = Date.now();
    await leader.close({ runBeforeUnload: false });
    const during = await insert('ben', 'during the handover');
    await until(async () => (await Promise.all(rest.map(view))).some((v) => v.role === 'leader'), 2000, 'a new leader within 2 s');
    const handoverMs = Date.now() - t0;
    await heldOnce(rest, during, 5000);
    const deliveredMs = Date.now() - t0;
    console.log(`handover: new leader after ${handoverMs} ms, the alert inserted meanwhile in all 4 tabs after ${deliveredMs} ms`);
    expect((await Promise.all(rest.map(view))).filter((v) => v.role === 'leader')).toHaveLength(1);
    for (const t of rest) expect((await announced(t))[before]).toBe(1);
    await until(async () => (await connections()) === 1, 5000, 'one socket again');

    // And again: the second leader goes too.
    const second = rest[(await Promise.all(rest.map(view))).findIndex((v) => v.role === 'leader')]!;
    const left = rest.filter((t) => t !== second);
    await second.close();
    const again = await insert('ben', 'second handover');
    await heldOnce(left, again, 5000);
    await context.close();
  });

  it('two users never share a channel: two browser contexts, and two users in one context', async () => {
    const a = await browser.newContext();
    const b = await browser.newContext();
    const ann = await openTabs(a, 'cat', 2);
    const dan = await openTabs(b, 'dan', 2);
    // One origin, one profile, another user (a sign-in in another tab): a group of its own.
    const danInA = await openTabs(a, 'dan', 1);
    expect((await view(danInA[0]!)).role).toBe('leader');
    expect(await connections()).toBe(3);
    const forCat = await insert('cat', 'for cat only');
    const forDan = await insert('dan', 'for dan only');
    await heldOnce(ann, forCat, 5000);
    await heldOnce([...dan, ...danInA], forDan, 5000);
    for (const t of ann) expect((await view(t)).users).toEqual(['cat']);
    for (const t of [...dan, ...danInA]) expect((await view(t)).users).toEqual(['dan']);
    for (const t of [...ann, ...dan, ...danInA]) expect(Object.keys(await announced(t))).toHaveLength(1);
    await a.close();
    await b.close();
  });

  it('without Web Locks, or with shareTabs: false, each tab holds its own socket', async () => {
    const context = await browser.newContext();
    await openTabs(context, 'ann', 2, { share: 0 });
    expect(await connections()).toBe(2);
    const bare = await browser.newContext();
    await bare.addInitScript(() => {
      Object.defineProperty((globalThis as any).Navigator.prototype, 'locks', { get: () => undefined });
    });
    const solo = await openTabs(bare, 'ann', 2);
    expect((await Promise.all(solo.map(view))).map((v) => v.role)).toEqual(['solo', 'solo']);
    expect(await connections()).toBe(4);
    await context.close();
    await bare.close();
  });
});
