/**
 * Logging must not slow delivery: at the default level (info) no line is written per alert or
 * per socket; a periodic summary counts them instead. At debug the seed's per-alert and
 * per-socket lines are there.
 */
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../src/daemon/daemon.js';
import type { Limits } from '../src/server/server.js';
import { TestClient } from './helpers/client.js';
import { SECRET, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';

const started: Daemon[] = [];
afterEach(async () => {
  for (const d of started.splice(0)) await d.stop();
});

async function daemonAt(level: string, db: string, limits: Partial<Limits> = {}) {
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  const d = await startDaemon({ databaseUrl: db, sessionSecret: SECRET, port: 0, host: '127.0.0.1', heartbeatMs: 30_000, authTimeoutMs: 5000, channel: 'pgbell', log: pino({ level }, stream), summaryMs: 300, limits });
  started.push(d);
  return { d, lines, msgs: () => lines.map((l) => l.msg) };
}

describe('log lines and the delivery path', () => {
  it('at info: no line per alert or socket, and a summary line counting alerts, deliveries and authentications', async () => {
    const db = await freshDatabase(['lu']);
    const { d, lines, msgs } = await daemonAt('info', db);
    const a = await TestClient.ready(d.url, await tokenFor('lu', { email: 'lu@example.test' }));
    const b = await TestClient.ready(d.url, await tokenFor('lu'));
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('lu', 'one'), ('lu', 'two')`);
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('lu', 'three')`);
    await a.count('notification', 3);
    await b.count('notification', 3);
    const deadline = Date.now() + 5000;
    while (!lines.some((l) => String(l.msg).startsWith('last 300 ms:')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const summaries = lines.filter((l) => String(l.msg).startsWith('last 300 ms:'));
    expect(summaries.length).toBeGreaterThan(0);
    const total = (k: string) => summaries.reduce((n, l) => n + Number(l[k]), 0);
    expect(total('alerts')).toBe(3);
    expect(total('delivered')).toBe(6);
    expect(total('authenticated')).toBe(2);
    expect(summaries.at(-1)!.msg).toMatch(/^last 300 ms: \d+ alerts, \d+ messages delivered, \d+ sockets authenticated; now 2 connections of 1 users$/);
    expect(msgs().filter((m) => /Broadcasted|authenticated via WebSocket|New WebSocket connection attempt/.test(m))).toEqual([]);
    a.close();
    b.close();
  });

  it('a reconnect storm at info: one line for the first socket refused, none per replay; the summary counts both', async () => {
    const db = await freshDatabase(['ls']);
    const { d, lines, msgs } = await daemonAt('info', db, { maxUnauthenticated: 1, maxWaitMs: 0 });
    const first = await TestClient.ready(d.url, await tokenFor('ls'));
    const cursor = first.cursor();
    first.close();
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('ls', 'one'), ('ls', 'two')`);
    // A resume that replays two alerts, then five sockets refused while one holds the only
    // unauthenticated place.
    const resumed = await TestClient.ready(d.url, await tokenFor('ls'), cursor);
    expect(resumed.alerts().map((a) => a.title)).toEqual(['one', 'two']);
    const idle = await TestClient.connect(d.url);
    const refused = await Promise.all(Array.from({ length: 5 }, () => TestClient.connect(d.url)));
    for (const c of refused) expect((await c.closed).code).toBe(1013);
    const deadline = Date.now() + 5000;
    const summaries = () => lines.filter((l) => String(l.msg).startsWith('last 300 ms:'));
    const total = (k: string) => summaries().reduce((n, l) => n + Number(l[k] ?? 0), 0);
    while ((total('refused') < 5 || total('replayed') < 2) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(total('replayed')).toBe(2);
    expect(total('refused')).toBe(5);
    expect(summaries().some((l) => /2 changes replayed from cursors/.test(l.msg))).toBe(true);
    // Refusals are worth a warning: the summary that counts them is one.
    expect(summaries().find((l) => Number(l.refused) > 0)!.level).toBe(40);
    expect(msgs().filter((m) => m.startsWith('refused a WebSocket'))).toHaveLength(1);
    expect(msgs().filter((m) => m.startsWith('replayed'))).toEqual([]);
    idle.close();
    resumed.close();
  });

  it("at debug: the seed's lines, one per alert and user and one per socket", async () => {
    const db = await freshDatabase(['lu']);
    const { d, msgs } = await daemonAt('debug', db);
    const a = await TestClient.ready(d.url, await tokenFor('lu', { email: 'lu@example.test' }));
    const b = await TestClient.ready(d.url, await tokenFor('lu', { email: 'lu@example.test' }));
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('lu', 'one')`);
    await a.count('notification', 1);
    await b.count('notification', 1);
    expect(msgs()).toEqual(expect.arrayContaining(['New WebSocket connection attempt', 'User lu (lu@example.test) authenticated via WebSocket', 'Broadcasted notification to user lu (2 connections)']));
    a.close();
    b.close();
  });
});
