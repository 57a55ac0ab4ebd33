/** The handshake: every kind of bad token ends in invalid_token + 4401; silence ends in 4408. */
import { SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secretKey, verifySessionToken, parseTtl } from '../src/auth.js';
import { TestClient } from './helpers/client.js';
import { SECRET, startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase } from './helpers/pg.js';

let daemon: TestDaemon;
const now = () => Math.floor(Date.now() / 1000);
const key = secretKey(SECRET);

let db: string;

beforeAll(async () => {
  db = await freshDatabase();
  daemon = await startTestDaemon(db, { authTimeoutMs: 300 });
});
afterAll(async () => {
  await daemon?.stop();
});

const badTokens: Array<[string, () => Promise<string>]> = [
  ['garbage', async () => 'not-a-jwt'],
  ['three garbage segments', async () => 'a.b.c'],
  ['signed with another secret', () => tokenFor('alice', { secret: 'another-secret-another-secret-1234' })],
  ['expired', () => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setExpirationTime(now() - 120).sign(key)],
  ['alg none', async () => new UnsecuredJWT({}).setSubject('alice').setExpirationTime(now() + 3600).encode()],
  ['HS512 with the right secret (algorithm is pinned)', () => new SignJWT({}).setProtectedHeader({ alg: 'HS512' }).setSubject('alice').setExpirationTime(now() + 3600).sign(new TextEncoder().encode(SECRET.repeat(2)))],
  ['no sub', () => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(now() + 3600).sign(key)],
  ['empty sub', () => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('').setExpirationTime(now() + 3600).sign(key)],
  ['no exp', () => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').sign(key)],
  ['tampered payload', async () => {
    const [h, , s] = (await tokenFor('alice')).split('.');
    const forged = Buffer.from(JSON.stringify({ sub: 'bob', exp: now() + 3600 })).toString('base64url');
    return `${h}.${forged}.${s}`;
  }],
];

describe('auth handshake', () => {
  it('a valid token → ready with user id and email', async () => {
    const c = await TestClient.connect(daemon.url);
    c.send({ type: 'auth', token: await tokenFor('alice', { email: 'alice@example.test' }) });
    expect(await c.next((m) => m.type === 'ready')).toEqual({ type: 'ready', userId: 'alice', email: 'alice@example.test', unread: 0, unseen: 0, byType: {} });
    c.close();
  });

  it('a token without email → ready with email null', async () => {
    const c = await TestClient.ready(daemon.url, await tokenFor('bob'));
    expect(c.messages[0]).toEqual({ type: 'ready', userId: 'bob', email: null, unread: 0, unseen: 0, byType: {} });
    c.close();
  });

  it.each(badTokens)('%s → invalid_token, close 4401', async (_name, make) => {
    const c = await TestClient.connect(daemon.url);
    c.send({ type: 'auth', token: await make() });
    expect(await c.closed).toEqual({ code: 4401, reason: 'invalid_token' });
    expect(c.messages).toEqual([{ type: 'error', code: 'invalid_token', message: 'Invalid session token' }]);
  });

  it('bad tokens are logged with the reason, not sent to the client', async () => {
    // A daemon of its own: the failures above used up this interval's line (see src/server/throttle.ts).
    const d = await startTestDaemon(db);
    try {
      const c = await TestClient.connect(d.url);
      c.send({ type: 'auth', token: await tokenFor('alice', { secret: 'another-secret-another-secret-1234' }) });
      await c.closed;
      expect(d.logs.messages()).toContain('WebSocket authentication failed: signature does not match SESSION_SECRET');
    } finally {
      await d.stop();
    }
  });

  it('no auth message in time → auth_timeout, close 4408', async () => {
    const c = await TestClient.connect(daemon.url);
    expect(await c.closed).toEqual({ code: 4408, reason: 'auth_timeout' });
    expect(c.messages).toEqual([{ type: 'error', code: 'auth_timeout', message: 'No auth message received in time' }]);
  });

  it('only bad frames before the deadline still time out with 4408', async () => {
    const c = await TestClient.connect(daemon.url);
    c.send('{nope');
    expect((await c.closed).code).toBe(4408);
    expect(c.messages.map((m) => m.code)).toEqual(['bad_message', 'auth_timeout']);
  });

  it('a message other than auth first → auth_required, close 4401', async () => {
    const c = await TestClient.connect(daemon.url);
    c.send({ type: 'ping' });
    expect(await c.closed).toEqual({ code: 4401, reason: 'auth_required' });
    expect(c.messages[0]).toMatchObject({ type: 'error', code: 'auth_required' });
  });

  it('re-auth on an open socket with a token for the same user → ready again; another user → 4401', async () => {
    const c = await TestClient.ready(daemon.url, await tokenFor('alice'));
    c.send({ type: 'auth', token: await tokenFor('alice', { email: 'new@example.test' }) });
    await c.count('ready', 2);
    c.send({ type: 'auth', token: await tokenFor('bob') });
    expect((await c.closed).code).toBe(4401);
  });

  it('an auth message sent right away, followed by a ping, is handled in order', async () => {
    const c = await TestClient.connect(daemon.url);
    c.send({ type: 'auth', token: await tokenFor('alice') });
    c.send({ type: 'ping' });
    await c.next((m) => m.type === 'pong');
    expect(c.messages.map((m) => m.type)).toEqual(['ready', 'synced', 'pong']);
    c.close();
  });
});

describe('token helpers', () => {
  it('verifySessionToken returns the session for a good token', async () => {
    const r = await verifySessionToken(await tokenFor('u1', { email: 'u1@x.test', ttlSeconds: 60 }), key);
    expect(r.ok && r.session.userId).toBe('u1');
    expect(r.ok && r.session.email).toBe('u1@x.test');
    expect(r.ok && r.session.exp).toBeGreaterThan(now() + 50);
  });

  it('parseTtl understands s/m/h/d and rejects the rest', () => {
    expect(parseTtl('90')).toBe(90);
    expect(parseTtl('15m')).toBe(900);
    expect(parseTtl('1h')).toBe(3600);
    expect(parseTtl('7d')).toBe(604800);
    expect(() => parseTtl('soon')).toThrow(/--ttl "soon" is not a duration/);
    expect(() => parseTtl('0s')).toThrow(/greater than zero/);
  });
});
