/**
 * Hostile input: property-based tests (fast-check) over the inbound parser and the token
 * verifier, raw-socket protocol violations, and a randomized many-users cross-check.
 */
import net from 'node:net';
import fc from 'fast-check';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secretKey, signSessionToken, verifySessionToken } from '../src/auth.js';
import { parseClientMessage } from '../src/protocol.js';
import { health, SECRET, startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';
import { seeded } from './helpers/random.js';

let db: string;
let daemon: TestDaemon;

beforeAll(async () => {
  db = await freshDatabase(['alice']);
  daemon = await startTestDaemon(db);
});
afterAll(async () => {
  await daemon?.stop();
});

/** Deeply nested JSON of a random shape. */
const deep = fc.integer({ min: 1, max: 5000 }).map((n) => '['.repeat(n) + ']'.repeat(n));
const hostileJson = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.json(),
  deep,
  fc.jsonValue().map((v) => JSON.stringify({ type: 'auth', token: v })),
  fc.jsonValue().map((v) => JSON.stringify({ type: 'read', ids: v })),
  fc.jsonValue().map((v) => JSON.stringify({ type: 'subscribe', types: v })),
  fc.constantFrom(
    '{"__proto__":{"type":"auth"},"token":"x"}',
    '{"type":"auth","token":"t","__proto__":{"admin":true}}',
    '{"type":"ping","constructor":{"prototype":{"x":1}}}',
    '{"type":"read","ids":["a"],"all":true}',
    '{"type":"auth","token":1e309}',
    '{"type":"read","ids":[' + '"a",'.repeat(1200) + '"a"]}',
    '{"type":' + '9'.repeat(400) + '}',
  ),
);

describe('parseClientMessage under fuzzing', () => {
  it('never throws; every rejection has a reason; accepted messages are well-typed', () => {
    fc.assert(
      fc.property(hostileJson, (text) => {
        const r = parseClientMessage(text);
        if (r.ok) {
          expect(['auth', 'ping', 'read', 'subscribe']).toContain(r.message.type);
          expect(Object.getPrototypeOf(r.message)).toBe(Object.prototype);
          expect((r.message as Record<string, unknown>).admin).toBeUndefined();
        } else {
          expect(typeof r.reason).toBe('string');
          expect(r.reason.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('verifySessionToken under fuzzing', () => {
  const key = secretKey(SECRET);

  it('random strings, truncations and byte flips of a valid token: never throws, never accepts', async () => {
    const valid = await signSessionToken(key, { userId: 'u', ttlSeconds: 600 });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string(),
          fc.integer({ min: 0, max: valid.length - 1 }).map((n) => valid.slice(0, n)),
          // Not the last character: its two low bits are padding in base64url, so some flips there decode to the same signature.
          fc.tuple(fc.integer({ min: 0, max: valid.length - 2 }), fc.string({ minLength: 1, maxLength: 1 })).map(([i, ch]) => (valid[i] === ch ? valid + 'x' : valid.slice(0, i) + ch + valid.slice(i + 1))),
        ),
        async (token) => {
          const r = await verifySessionToken(token, key);
          expect(r.ok).toBe(false);
          if (!r.ok) expect(r.reason.length).toBeGreaterThan(0);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('tokens re-signed with other keys or algorithms, or with odd claims, are refused; only well-formed ones pass', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          sub: fc.oneof(fc.string(), fc.integer(), fc.constant(undefined), fc.constant('__proto__')),
          exp: fc.oneof(fc.integer({ min: -1e6, max: 1e10 }), fc.double({ min: -1e10, max: 1e10, noNaN: true }), fc.constant(undefined)),
          otherKey: fc.boolean(),
          alg: fc.constantFrom('HS256', 'HS384', 'HS512'),
        }),
        async ({ sub, exp, otherKey, alg }) => {
          const payload: Record<string, unknown> = {};
          if (sub !== undefined) payload.sub = sub;
          if (exp !== undefined) payload.exp = exp;
          const token = await new SignJWT(payload).setProtectedHeader({ alg }).sign(otherKey ? secretKey('x'.repeat(40)) : key);
          const r = await verifySessionToken(token, key);
          const valid = !otherKey && alg === 'HS256' && typeof sub === 'string' && sub !== '' && typeof exp === 'number' && exp > Date.now() / 1000 + 1;
          if (valid) expect(r).toMatchObject({ ok: true, session: { userId: sub } });
          else if (r.ok) expect(typeof exp === 'number' && exp > Date.now() / 1000 - 2).toBe(true); // only a boundary exp
        },
      ),
      { numRuns: 300 },
    );
  });
});

/** A raw TCP client doing the WebSocket handshake by hand, to send what `ws` never would. */
async function rawSocket(port: number): Promise<{ socket: net.Socket; closeCode: Promise<number | null> }> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => socket.once('connect', () => r()));
  socket.write(
    'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
  );
  let buf = Buffer.alloc(0);
  const closeCode = new Promise<number | null>((resolve) => {
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const frames = buf.subarray(end + 4);
      // A server close frame: 0x88, length, 2-byte code.
      const i = frames.indexOf(0x88);
      if (i >= 0 && frames.length >= i + 4) resolve(frames.readUInt16BE(i + 2));
    });
    socket.on('close', () => resolve(null));
    socket.on('error', () => resolve(null));
  });
  await new Promise<void>((r) => {
    const check = () => (buf.includes('\r\n\r\n') ? r() : setTimeout(check, 5));
    check();
  });
  return { socket, closeCode };
}

/** A masked client frame. */
function frame(opcode: number, payload: Buffer, { mask = true, fin = true } = {}): Buffer {
  const len = payload.length;
  const header = len < 126 ? Buffer.from([(fin ? 0x80 : 0) | opcode, (mask ? 0x80 : 0) | len]) : Buffer.from([(fin ? 0x80 : 0) | opcode, (mask ? 0x80 : 0) | 126, len >> 8, len & 255]);
  if (!mask) return Buffer.concat([header, payload]);
  const key = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(payload.map((b, i) => b ^ key[i % 4]!));
  return Buffer.concat([header, key, masked]);
}

describe('raw-socket protocol violations', () => {
  it.each([
    ['invalid UTF-8 in a text frame', 1007, frame(0x1, Buffer.from([0xc3, 0x28, 0xa0, 0xa1]))],
    ['an unmasked client frame', 1002, frame(0x1, Buffer.from('{"type":"ping"}'), { mask: false })],
    ['a reserved opcode', 1002, frame(0x3, Buffer.from('x'))],
    ['a fragmented control frame', 1002, frame(0x9, Buffer.from('x'), { fin: false })],
  ] as const)('%s → close %i; the daemon stays up', async (_l, code, bytes) => {
    const { socket, closeCode } = await rawSocket(daemon.port);
    socket.write(bytes);
    expect(await closeCode).toBe(code);
    socket.destroy();
    expect((await health(daemon.http)).status).toBe(200);
  });

  it('a header flood is refused before any upgrade; the daemon stays up', async () => {
    const socket = net.connect(daemon.port, '127.0.0.1');
    await new Promise<void>((r) => socket.once('connect', () => r()));
    let answer = '';
    socket.on('data', (d) => (answer += d));
    socket.on('error', () => {});
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n');
    for (let i = 0; i < 2000; i++) socket.write(`X-Flood-${i}: ${'y'.repeat(100)}\r\n`);
    socket.write('\r\n');
    await closed;
    expect(answer).toMatch(/^HTTP\/1\.1 431/);
    expect((await health(daemon.http)).status).toBe(200);
  });
});

describe('randomized cross-user delivery', () => {
  it('30 users × 1–4 tabs, 6 writers inserting random users\' alerts in random batches: every socket gets exactly its user\'s', async () => {
    const rand = seeded(0x5eed);
    const users = Array.from({ length: 30 }, (_, i) => `r${i}`);
    await query(db, `INSERT INTO "User" (id, email) SELECT u, u || '@example.test' FROM unnest($1::text[]) u`, [users]);
    const tabs: Array<{ user: string; tab: Tab }> = [];
    for (const user of users) for (let k = 0, n = 1 + Math.floor(rand() * 4); k < n; k++) tabs.push({ user, tab: await new Tab(await tokenFor(user)).connect(daemon.url) });
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        for (let b = 0; b < 15; b++) {
          const batch = Array.from({ length: 1 + Math.floor(rand() * 8) }, () => users[Math.floor(rand() * users.length)]!);
          await query(db, `INSERT INTO "Alert" ("userId", title) SELECT u, 'rnd' FROM unnest($1::text[]) u`, [batch]);
        }
      }),
    );
    const truth = new Map<string, Set<string>>(users.map((u) => [u, new Set()]));
    for (const r of await query(db, `SELECT id, "userId" FROM "Alert" WHERE title = 'rnd'`)) truth.get(r.userId)!.add(r.id);
    for (const { user, tab } of tabs) {
      await until(() => tab.ids.size >= truth.get(user)!.size, 10_000, `alerts of ${user}`);
      expect(tab.ids).toEqual(truth.get(user));
      expect(tab.repeatsWithinConnection).toEqual([]);
      tab.close();
    }
  }, 60_000);
});

