/**
 * Logging must not slow delivery: at the default level (info) no line is written per alert or
 * per socket; a periodic summary counts them instead. At debug the seed's per-alert and
 * per-socket lines are there.
 */
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../src/daemon.js';
import { TestClient } from './helpers/client.js';
import { SECRET, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';

const started: Daemon[] = [];
afterEach(async () => {
  for (const d of started.splice(0)) await d.stop();
});

async function daemonAt(level: string, db: string) {
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  const d = await startDaemon({ databaseUrl: db, sessionSecret: SECRET, port: 0, host: '127.0.0.1', heartbeatMs: 30_000, authTimeoutMs: 5000, channel: 'pgbell', log: pino({ level }, stream), summaryMs: 300 });
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
