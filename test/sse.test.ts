/**
 * GET /alerts/stream: Server-Sent Events with the WebSocket's messages, read by the real curl
 * binary, by fetch with Last-Event-ID, and by Chromium's own EventSource across a daemon
 * restart. Every reader ends with exactly its user's committed alerts.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { haveBrowser, launchChromium } from './helpers/browser.js';
import { sleep } from './helpers/client.js';
import { startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, psql, query } from './helpers/pg.js';
import { until } from './helpers/tab.js';

let db: string;
let daemon: TestDaemon;

beforeAll(async () => {
  db = await freshDatabase(['sa', 'sb', 'sc', 'sd']);
  daemon = await startTestDaemon(db);
});
afterAll(async () => {
  await daemon?.stop();
});

interface Event {
  event: string;
  id: string | undefined;
  data: any;
}

/** Reads an event stream with fetch, parsing events as they come. */
async function openStream(base: string, opts: { token?: string; lastEventId?: string; query?: string } = {}) {
  const ctl = new AbortController();
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.lastEventId) headers['last-event-id'] = opts.lastEventId;
  const res = await fetch(`${base}/alerts/stream${opts.query ?? ''}`, { headers, signal: ctl.signal });
  const events: Event[] = [];
  let lastId: string | undefined;
  const done = (async () => {
    if (!res.ok || !res.body) return;
    let buf = '';
    const dec = new TextDecoder();
    try {
      for await (const chunk of res.body) {
        buf += dec.decode(chunk as Uint8Array, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const e: Partial<Event> = {};
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) e.event = line.slice(7);
            else if (line.startsWith('id: ')) e.id = line.slice(4);
            else if (line.startsWith('data: ')) e.data = JSON.parse(line.slice(6));
          }
          if (e.event) {
            if (e.id) lastId = e.id;
            events.push(e as Event);
          }
        }
      }
    } catch {
      // aborted
    }
  })();
  return {
    res,
    events,
    get lastId() {
      return lastId;
    },
    alertIds: () => events.flatMap((e) => (e.event === 'notification' ? [e.data.alert.id as string] : e.event === 'notifications' ? e.data.alerts.map((a: any) => a.id as string) : [])),
    close: () => ctl.abort(),
    done,
  };
}

const committed = async (user: string) => new Set((await query(db, `SELECT id FROM "Alert" WHERE "userId" = $1`, [user])).map((r) => r.id as string));

describe('GET /alerts/stream', () => {
  it('curl -N receives a psql insert as an event with the cursor as its id', async () => {
    const token = await tokenFor('sa');
    const curl = spawn('curl', ['-sN', '-H', `Authorization: Bearer ${token}`, `${daemon.http}/alerts/stream`]);
    let out = '';
    curl.stdout.on('data', (d) => (out += d));
    await until(() => out.includes('event: synced'), 5000, 'synced');
    expect(out).toMatch(/^retry: \d+\n\nevent: ready\ndata: \{"type":"ready","userId":"sa"/);
    await psql(db, `INSERT INTO "Alert" ("userId", title) VALUES ('sa', 'via curl')`);
    await until(() => out.includes('via curl'), 5000, 'the alert');
    expect(out).toMatch(/event: notification\nid: 1\.[^\n]+\ndata: \{"type":"notification","alert":\{[^\n]*"title":"via curl"/);
    curl.kill();
  });

  it('a bad token gets 401, a page of a foreign origin 403; another user\'s stream hears nothing', async () => {
    expect((await fetch(`${daemon.http}/alerts/stream?token=nope`)).status).toBe(401);
    expect((await fetch(`${daemon.http}/alerts/stream`)).status).toBe(401);
    const strict = await startTestDaemon(db, { socketOrigins: ['https://app.example.test'], allowedOrigins: ['https://app.example.test'] });
    try {
      const r = await fetch(`${strict.http}/alerts/stream`, { headers: { origin: 'https://evil.example', authorization: `Bearer ${await tokenFor('sb')}` } });
      expect(r.status).toBe(403);
    } finally {
      await strict.stop();
    }
    const mine = await openStream(daemon.http, { token: await tokenFor('sb') });
    const other = await openStream(daemon.http, { token: await tokenFor('sc') });
    await until(() => mine.events.some((e) => e.event === 'synced') && other.events.some((e) => e.event === 'synced'), 5000, 'both synced');
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('sb', 'for sb only')`);
    await until(() => mine.alertIds().length === 1, 5000, 'sb got it');
    await sleep(300);
    expect(other.alertIds()).toEqual([]);
    mine.close();
    other.close();
  });

  it('resume by Last-Event-ID while a writer runs: nothing lost, nothing repeated on a stream', async () => {
    const token = await tokenFor('sd');
    let stop = false;
    let writer: Promise<void> | undefined;
    const got = new Set<string>();
    let lastId: string | undefined;
    for (let round = 0; round < 4; round++) {
      const s = await openStream(daemon.http, { token, lastEventId: lastId });
      // A stream without a cursor starts from now: the writer starts once the first one is live.
      if (!writer) {
        await until(() => s.events.some((e) => e.event === 'synced'), 5000, 'the first stream live');
        writer = (async () => {
          for (let i = 0; !stop; i++) {
            await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('sd', $1)`, [`w${i}`]);
            await sleep(3);
          }
        })();
      }
      await sleep(150 + round * 50);
      s.close();
      await s.done;
      const ids = s.alertIds();
      expect(new Set(ids).size).toBe(ids.length);
      for (const id of ids) got.add(id);
      lastId = s.lastId ?? lastId;
      if (round > 0) expect(s.events[0]?.event).toBe('ready');
    }
    stop = true;
    await writer;
    const last = await openStream(daemon.http, { token, lastEventId: lastId });
    await until(() => last.events.some((e) => e.event === 'synced'), 5000, 'synced');
    for (const id of last.alertIds()) got.add(id);
    last.close();
    expect(got).toEqual(await committed('sd'));
  });
});

describe.skipIf(!haveBrowser)("Chromium's own EventSource", () => {
  let browser: Browser;
  let page: http.Server;
  beforeAll(async () => {
    page = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>sse</title><link rel="icon" href="data:,">');
    });
    await new Promise<void>((r) => page.listen(0, '127.0.0.1', r));
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => page?.close(r));
  });

  it('reconnects by itself after the daemon restarts and misses nothing', async () => {
    const pageOrigin = `http://127.0.0.1:${(page.address() as AddressInfo).port}`;
    let d = await startTestDaemon(db, { socketOrigins: [pageOrigin], allowedOrigins: [pageOrigin] });
    const port = d.port;
    try {
      const tab = await browser.newPage();
      await tab.goto(pageOrigin);
      const url = `${d.http}/alerts/stream?token=${encodeURIComponent(await tokenFor('sc'))}`;
      await tab.evaluate((u) => {
        const w = globalThis as any;
        w.got = [];
        w.opens = 0;
        w.synced = 0;
        const es = new EventSource(u);
        es.addEventListener('open', () => w.opens++);
        es.addEventListener('synced', () => w.synced++);
        es.addEventListener('notification', (e) => w.got.push(JSON.parse((e as MessageEvent).data).alert.id));
      }, url);
      // Live once `synced` arrived (without a cursor the stream starts from its first read, not from `open`).
      await until(async () => (await tab.evaluate(() => (globalThis as any).synced)) === 1, 5000, 'synced');
      await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('sc', 'before the restart')`);
      await until(async () => (await tab.evaluate(() => (globalThis as any).got.length)) >= 1, 5000, 'first alert');
      await d.stop();
      await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('sc', 'while down 1'), ('sc', 'while down 2')`);
      d = await startTestDaemon(db, { port, socketOrigins: [pageOrigin], allowedOrigins: [pageOrigin] });
      await until(async () => (await tab.evaluate(() => (globalThis as any).opens)) >= 2, 20_000, 'reconnected');
      await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('sc', 'after the restart')`);
      const truth = await committed('sc');
      await until(async () => (await tab.evaluate(() => (globalThis as any).got.length)) >= truth.size, 10_000, `all ${truth.size}`);
      const got = (await tab.evaluate(() => (globalThis as any).got)) as string[];
      expect(new Set(got)).toEqual(truth);
      expect(got.length).toBe(truth.size);
      await tab.close();
    } finally {
      await d.stop();
    }
  }, 60_000);
});
