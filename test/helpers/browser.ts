/**
 * Debian's Chromium (never a downloaded browser) for the browser tests, driven by playwright-core.
 * Without it those tests skip with one line, unless PGBELL_REQUIRE_BROWSER=1 (set by .ci/run).
 */
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { secretKey, signSessionToken } from '../../src/auth.js';
import type { Db } from '../../src/db/connect.js';
import { ALERTS_PATHS, alertsHandler } from '../../src/server/alerts.js';
import { handleWithFetch } from '../../src/server/node.js';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const haveBrowser = existsSync(CHROMIUM);
if (!haveBrowser) {
  if (process.env.PGBELL_REQUIRE_BROWSER === '1') throw new Error(`PGBELL_REQUIRE_BROWSER=1 but ${CHROMIUM} does not exist (apt-get install chromium)`);
  console.warn(`browser tests skipped: ${CHROMIUM} not found (apt-get install chromium, or set CHROMIUM_PATH)`);
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // This machine's network is closed: keep Chromium from phoning home at start.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * A page of pgbell/client for the tab tests: test/pages/tabs.ts bundled by esbuild, served with
 * a /token?user= route (signs a session token for that user) and the /alerts handler, on one
 * origin, as an app would serve them.
 */
export interface TestPageServer {
  /** The page's URL for `user` against the daemon at `ws`; `extra` adds query parameters (share=0, beat=…). */
  url(user: string, ws: string, extra?: Record<string, string | number>): string;
  close(): Promise<void>;
}

export async function startTestPage(opts: { db: Db; secret: string }): Promise<TestPageServer> {
  const built = await build({ entryPoints: [path.resolve('test/pages/tabs.ts')], bundle: true, write: false, format: 'iife', target: 'es2020', logLevel: 'warning' });
  const js = built.outputFiles[0]!.text;
  const key = secretKey(opts.secret);
  const alerts = alertsHandler({ db: opts.db, key, allowedOrigins: [], maxReplay: 10_000 });
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (ALERTS_PATHS.has(url.pathname)) return void handleWithFetch(req, res, alerts).catch(() => res.destroy());
    const send = (type: string, body: string) => {
      res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (url.pathname === '/') return send('text/html; charset=utf-8', '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tabs</title><link rel="icon" href="data:,"></head><body><script src="/tabs.js"></script></body></html>');
    if (url.pathname === '/tabs.js') return send('text/javascript', js);
    if (url.pathname === '/token') {
      const user = url.searchParams.get('user') ?? '';
      return void signSessionToken(key, { userId: user, email: null, ttlSeconds: 3600 }).then((token) => send('application/json', JSON.stringify({ token })));
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return {
    url: (user, ws, extra = {}) => `${base}?${new URLSearchParams({ user, ws, ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [k, String(v)])) })}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
