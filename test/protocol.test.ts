/** Malformed input gets a named error; the socket, the other sockets and the process carry on. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseClientMessage } from '../src/protocol.js';
import { TestClient } from './helpers/client.js';
import { health, startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, psql } from './helpers/pg.js';

let daemon: TestDaemon;
let db: string;

beforeAll(async () => {
  db = await freshDatabase(['alice']);
  daemon = await startTestDaemon(db);
});
afterAll(async () => {
  await daemon?.stop();
});

const malformed: Array<[string, string | Buffer, RegExp]> = [
  ['not JSON', '{"type": "auth", ', /not valid JSON/],
  ['a JSON array', '[1,2]', /JSON object with a "type" field/],
  ['a JSON string', '"auth"', /JSON object/],
  ['no type', '{"token":"x"}', /no string "type" field/],
  ['an unknown type', '{"type":"subscribe-all"}', /unknown message type "subscribe-all"; expected one of auth, ping/],
  ['auth without token', '{"type":"auth"}', /invalid "auth" message: token/],
  ['auth with a numeric token', '{"type":"auth","token":42}', /invalid "auth" message: token/],
  ['a binary frame', Buffer.from([1, 2, 3]), /binary frames are not supported/],
];

describe('malformed frames on an authenticated socket', () => {
  it.each(malformed)('%s → bad_message naming the problem; socket stays open and usable', async (_name, frame, reason) => {
    const c = await TestClient.ready(daemon.url, await tokenFor('alice'));
    c.ws.send(frame);
    const err = await c.next((m) => m.type === 'error');
    expect(err.code).toBe('bad_message');
    expect(err.message).toMatch(reason);
    c.send({ type: 'ping' });
    await c.next((m) => m.type === 'pong');
    expect(c.ws.readyState).toBe(c.ws.OPEN);
    c.close();
  });

  it('a flood of garbage on one socket does not disturb delivery to another', async () => {
    const noisy = await TestClient.ready(daemon.url, await tokenFor('alice'));
    const quiet = await TestClient.ready(daemon.url, await tokenFor('alice'));
    for (let i = 0; i < 200; i++) noisy.ws.send(i % 2 ? '\u0000\uffff' : '{"type":');
    await psql(db, `INSERT INTO "Alert" ("userId", title) VALUES ('alice', 'still here')`);
    expect((await quiet.count('notification', 1))[0].alert.title).toBe('still here');
    expect((await health(daemon.http)).status).toBe(200);
    noisy.close();
    quiet.close();
  });

  it('a frame over 64 KiB closes that socket with 1009', async () => {
    const c = await TestClient.ready(daemon.url, await tokenFor('alice'));
    c.send({ type: 'ping', pad: 'x'.repeat(70 * 1024) });
    expect((await c.closed).code).toBe(1009);
  });

  it('app-level ping → pong', async () => {
    const c = await TestClient.ready(daemon.url, await tokenFor('alice'));
    c.send({ type: 'ping' });
    expect(await c.next((m) => m.type === 'pong')).toEqual({ type: 'pong' });
    c.close();
  });
});

describe('edge routes', () => {
  it('/ws is also a WebSocket path', async () => {
    const c = await TestClient.ready(daemon.url + 'ws', await tokenFor('alice'));
    expect(c.messages[0].type).toBe('ready');
    c.close();
  });

  it('a WebSocket on another path is refused with 404', async () => {
    await expect(TestClient.connect(daemon.url + 'nope')).rejects.toThrow('HTTP 404');
  });

  it('an unknown HTTP route → 404 JSON', async () => {
    const res = await fetch(`${daemon.http}/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: 'not_found' });
  });
});

describe('parseClientMessage', () => {
  it('accepts the known messages and ignores extra fields', () => {
    expect(parseClientMessage('{"type":"auth","token":"t","extra":1}')).toEqual({ ok: true, message: { type: 'auth', token: 't' } });
    expect(parseClientMessage('{"type":"ping"}')).toEqual({ ok: true, message: { type: 'ping' } });
  });
  it('rejects a 10 kB token', () => {
    expect(parseClientMessage(JSON.stringify({ type: 'auth', token: 'x'.repeat(10_000) }))).toMatchObject({ ok: false, reason: expect.stringMatching(/longer than 8192/) });
  });
});
