/**
 * A socket that rejoins, in Debian's Chromium: the network cut by the DevTools protocol's
 * emulation (Network.emulateNetworkConditions, offline) while alerts are inserted, then back.
 * The client hears `offline`, finds the socket dead (its ping unanswered), and on `online`
 * reconnects at once and resumes from its cursor. PGBELL_OFFLINE_MS sets how long the network
 * is away (default 30 s, as issue 29 asks; a shorter one tests the same path faster).
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../src/db/connect.js';
import { SECRET, startTestDaemon, type TestDaemon } from './helpers/daemon.js';
import { haveBrowser, launchChromium, startTestPage, type TestPageServer } from './helpers/browser.js';
import { freshDatabase, query } from './helpers/pg.js';
import { until } from './helpers/tab.js';

const OFFLINE_MS = Number(process.env.PGBELL_OFFLINE_MS ?? 30_000);

let db: string;
let appDb: Db;
let daemon: TestDaemon;
let pages: TestPageServer;
let browser: Browser;

describe.skipIf(!haveBrowser)('rejoin after the network comes back (Chromium)', () => {
  beforeAll(async () => {
    db = await freshDatabase(['eve']);
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

  it(`offline ${OFFLINE_MS / 1000} s with alerts inserted meanwhile, then online: every alert within 2 s, none twice`, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const lines: string[] = [];
    page.on('console', (m) => lines.push(`${Date.now()} ${m.text()}`));
    await page.goto(pages.url('eve', daemon.url));
    const view = () => page.evaluate(() => (globalThis as any).__pg.view() as { ids: string[]; status: string });
    await until(async () => (await view()).status === 'live', 10_000, 'live');
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    const network = (offline: boolean) => cdp.send('Network.emulateNetworkConditions', { offline, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });

    await network(true);
    const inserted: string[] = [];
    const t0 = Date.now();
    for (let i = 0; Date.now() - t0 < OFFLINE_MS; i++) {
      const rows = await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('eve', $1) RETURNING id`, [`while offline ${i}`]);
      inserted.push(String(rows[0]!.id));
      await new Promise((r) => setTimeout(r, Math.min(5000, OFFLINE_MS / 4)));
    }
    const whileOffline = await view();
    const seenOffline = inserted.filter((id) => whileOffline.ids.includes(id)).length;
    await network(false);
    const back = Date.now();
    await until(async () => {
      const v = await view();
      return inserted.every((id) => v.ids.includes(id)) && v.status === 'live';
    }, 2000, 'every alert, live, within 2 s of the network coming back').catch((err: Error) => {
      throw new Error(`${err.message}\n${lines.join('\n')}`);
    });
    const recoveryMs = Date.now() - back;
    console.log(`offline ${Math.round((back - t0) / 1000)} s, ${inserted.length} alerts inserted (${seenOffline} reached the page while offline, status ${whileOffline.status}); all there ${recoveryMs} ms after online`);
    expect(seenOffline).toBe(0);
    const v = await view();
    expect(new Set(v.ids).size).toBe(v.ids.length);
    const announced = await page.evaluate(() => (globalThis as any).__pg.announced as Record<string, number>);
    for (const id of inserted) expect(announced[id]).toBe(1);
    await context.close();
  }, OFFLINE_MS + 60_000);
});
