/**
 * What a hostile or broken client can do to other users: a `sub` Postgres cannot compare
 * (U+0000) is refused at authentication, and other users' sockets go on being served.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from './helpers/client.js';
import { startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let db: string;
let daemon: TestDaemon;

beforeAll(async () => {
  db = await freshDatabase(['alice']);
  daemon = await startTestDaemon(db);
});
afterAll(async () => {
  await daemon?.stop();
});

describe('a sub holding a control character', () => {
  it('is refused with 4401 on a socket and 401 on the event stream; other users are served meanwhile', async () => {
    const alice = await new Tab(await tokenFor('alice')).connect(daemon.url);
    const bad = [await tokenFor('a\u0000b'), await tokenFor('x\u0000'), await tokenFor('line\nbreak')];
    const closes = await Promise.all(
      bad.map(async (token) => {
        const c = await TestClient.connect(daemon.url);
        c.send({ type: 'auth', token });
        return c.closed;
      }),
    );
    for (const closed of closes) expect(closed.code).toBe(4401);
    for (const token of bad) expect((await fetch(`${daemon.http}/alerts/stream`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(401);
    // Nothing of theirs is retried: a new socket gets ready, and alice's alerts arrive.
    const ids = (await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'one'), ('alice', 'two') RETURNING id`)).map((r) => r.id as string);
    await until(() => ids.every((id) => alice.ids.has(id)), 10_000, 'alice\'s alerts');
    const late = await new Tab(await tokenFor('alice')).connect(daemon.url);
    expect(late.ids.size).toBe(0);
    const retries = daemon.logs.lines.filter((l) => /retrying/.test(l.msg));
    expect(retries).toEqual([]);
    alice.close();
    late.close();
  });
});

describe('log lines a client can cause', () => {
  it('300 bad tokens and 50 foreign-origin handshakes give one warn line each within the interval', async () => {
    const d = await startTestDaemon(db, { socketOrigins: ['https://app.example.test'] });
    try {
      const bad = await tokenFor('alice', { secret: 'another-secret-0123456789abcdef-xyz' });
      for (let i = 0; i < 3; i++) {
        await Promise.all(
          Array.from({ length: 100 }, async () => {
            const c = await TestClient.connect(d.url);
            c.send({ type: 'auth', token: bad });
            return c.closed;
          }),
        );
      }
      await Promise.all(
        Array.from({ length: 50 }, () => TestClient.connect(d.url, { headers: { origin: 'https://evil.example' } }).then((c) => c.close(), () => undefined)),
      );
      const warn = (re: RegExp) => d.logs.lines.filter((l) => l.level === 40 && re.test(l.msg));
      expect(warn(/authentication failed/)).toHaveLength(1);
      expect(warn(/from origin https:\/\/evil\.example/)).toHaveLength(1);
    } finally {
      await d.stop();
    }
  }, 60_000);
});

describe('ADMIN_TOKEN', () => {
  it('guards /metrics and /health\'s details; /health still says ok or degraded to anyone', async () => {
    const admin = 'admin-token-0123456789abcdef';
    const d = await startTestDaemon(db, { adminToken: admin });
    try {
      expect((await fetch(`${d.http}/metrics`)).status).toBe(401);
      expect((await fetch(`${d.http}/metrics`, { headers: { authorization: 'Bearer wrong-token-0123456789abcdef' } })).status).toBe(401);
      const m = await fetch(`${d.http}/metrics`, { headers: { authorization: `Bearer ${admin}` } });
      expect(m.status).toBe(200);
      expect(await m.text()).toMatch(/pgbell_/);
      const open = await fetch(`${d.http}/health`);
      expect(open.status).toBe(200);
      expect(Object.keys((await open.json()) as object).sort()).toEqual(['status', 'timestamp']);
      const full = (await (await fetch(`${d.http}/health`, { headers: { authorization: `Bearer ${admin}` } })).json()) as Record<string, unknown>;
      expect(full).toMatchObject({ status: 'ok', listener: { state: 'connected' } });
    } finally {
      await d.stop();
    }
  });
});
