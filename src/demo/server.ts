/**
 * The demo app's server (what `npm start` opens on :3007): the page and its bundle, the /alerts
 * handler mounted the way an app would mount it, and — this being dev only — a /api/token route
 * that signs the demo user's session token. The WebSocket daemon stays a separate server.
 */
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { signSessionToken } from '../auth.js';
import type { Db } from '../db/connect.js';
import { ALERTS_PATHS, alertsHandler } from '../server/alerts.js';
import { handleWithFetch } from '../server/node.js';
import type { Logger } from '../log.js';
import { requestTarget } from '../server/target.js';

/** dist/demo/app.js, built by scripts/build-demo.mjs (src/demo and dist/demo are both two levels down). */
export const DEMO_BUNDLE = fileURLToPath(new URL('../../dist/demo/app.js', import.meta.url));

export interface DemoOptions {
  port: number;
  host?: string | undefined;
  db: Db;
  key: Uint8Array;
  /** The daemon's WebSocket URL, as the browser should reach it. */
  wsUrl: string;
  user: { id: string; email: string };
  /** Shown on the page: a command that inserts an alert for the demo user. */
  psql: string;
  pollIntervalMs?: number;
  maxReplay: number;
  log: Logger;
}

export interface DemoServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startDemoServer(opts: DemoOptions): Promise<DemoServer> {
  let bundle: Buffer;
  try {
    bundle = await readFile(DEMO_BUNDLE);
  } catch {
    throw new Error(`the demo bundle ${DEMO_BUNDLE} is missing: run \`npm run build\``);
  }
  const alerts = alertsHandler({ db: opts.db, key: opts.key, allowedOrigins: [], maxReplay: opts.maxReplay });
  const config = {
    wsUrl: opts.wsUrl,
    pollUrl: '/alerts',
    pollIntervalMs: opts.pollIntervalMs ?? 60_000,
    user: opts.user,
    psql: opts.psql,
  };
  const page = html(config);

  const server = http.createServer((req, res) => {
    const target = requestTarget(req);
    if (!target) return send(res, 400, 'text/plain', 'the request target does not parse');
    const path = target.pathname;
    if (ALERTS_PATHS.has(path)) {
      handleWithFetch(req, res, alerts).catch((err) => {
        opts.log.error({ err }, 'demo: /alerts failed');
        res.destroy();
      });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed');
    if (path === '/' || path === '/index.html') return send(res, 200, 'text/html; charset=utf-8', page);
    if (path === '/app.js') return send(res, 200, 'text/javascript; charset=utf-8', bundle);
    if (path === '/api/token') {
      signSessionToken(opts.key, { userId: opts.user.id, email: opts.user.email, ttlSeconds: 3600 }).then(
        (token) => send(res, 200, 'application/json', JSON.stringify({ token })),
        () => send(res, 500, 'text/plain', 'could not sign a token'),
      );
      return;
    }
    send(res, 404, 'text/plain', 'not found');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new Error(`DEMO_PORT ${opts.port} is already in use; set DEMO_PORT to a free port`) : err),
    );
    server.listen(opts.port, opts.host, () => resolve());
  });
  const { port, address, family } = server.address() as AddressInfo;
  // The address it listens on (127.0.0.1 under dev), or localhost when it is every interface.
  const host = address === '0.0.0.0' || address === '::' ? 'localhost' : family === 'IPv6' ? `[${address}]` : address;
  return {
    port,
    url: `http://${host}:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function send(res: http.ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function html(config: object): string {
  // `<` escaped so nothing in the config can close the script element.
  const json = JSON.stringify(config).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pgbell demo</title>
<!-- An empty icon: without one the browser asks for /favicon.ico and logs its 404 in the console. -->
<link rel="icon" href="data:,">
<style>
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; background: #f6f8fa; }
  .navbar { position: relative; display: flex; align-items: center; gap: 16px; padding: 10px 20px; background: #24292f; color: #fff; }
  .brand { font-weight: 600; font-size: 17px; }
  .spacer { flex: 1; }
  .status { display: inline-flex; align-items: center; gap: 6px; font-size: 13px; opacity: .9; }
  .dot { width: 9px; height: 9px; border-radius: 50%; background: #8c959f; display: inline-block; }
  .status-live .dot { background: #2da44e; }
  .status-polling .dot { background: #d4a72c; }
  .status-offline .dot { background: #cf222e; }
  .bell { position: relative; display: inline-flex; color: #fff; background: none; border: 0; cursor: pointer; padding: 4px 8px; }
  .badge { position: absolute; top: -2px; right: -4px; min-width: 18px; padding: 0 5px; border-radius: 9px; background: #cf222e; color: #fff; font-size: 11px; font-weight: 700; line-height: 18px; text-align: center; }
  .badge.zero { background: #57606a; }
  .dropdown { position: absolute; top: 52px; right: 12px; width: 380px; max-height: 70vh; overflow: auto; background: #fff; color: #1f2328; border: 1px solid #d0d7de; border-radius: 8px; box-shadow: 0 8px 24px rgba(140,149,159,.3); z-index: 10; }
  .dropdown-head { display: flex; justify-content: space-between; gap: 8px; padding: 10px; border-bottom: 1px solid #d0d7de; }
  .dropdown ul { list-style: none; margin: 0; padding: 0; }
  .dropdown li { padding: 10px 12px; border-bottom: 1px solid #eaeef2; }
  .dropdown li.unread { background: #ddf4ff; }
  .title { font-weight: 600; }
  .kind { font-size: 11px; text-transform: uppercase; color: #57606a; border: 1px solid #d0d7de; border-radius: 4px; padding: 0 4px; margin-right: 4px; }
  .message { color: #57606a; }
  .meta { display: flex; justify-content: space-between; align-items: center; font-size: 12px; color: #57606a; margin-top: 4px; }
  .empty { padding: 12px; color: #57606a; }
  main { max-width: 760px; margin: 32px auto; padding: 0 20px; }
  pre { white-space: pre-wrap; word-break: break-all; background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 12px; font-size: 12px; }
  button { font: inherit; }
</style>
</head>
<body>
<div id="root"></div>
<script>window.__PGBELL__ = ${json};</script>
<script src="/app.js"></script>
</body>
</html>
`;
}
