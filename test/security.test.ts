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
