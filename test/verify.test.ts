/**
 * pgbell checks HS256 signatures with node:crypto (see verifyWith in src/auth.ts), not with
 * jose's WebCrypto verification. This holds it to jose's jwtVerify: on valid tokens, tokens
 * signed with another key or algorithm, tampered, expired, not yet valid, missing claims, and
 * malformed ones, both must accept and refuse the same tokens, with the same session.
 */
import fc from 'fast-check';
import { jwtVerify, SignJWT, base64url } from 'jose';
import { describe, expect, it } from 'vitest';
import { secretKey, verifySessionToken } from '../src/auth.js';

const KEY = secretKey('verify-test-secret-0123456789abcdef');
const OTHER = secretKey('verify-test-other-0123456789abcdefg');

async function joseSays(token: string, leeway: number): Promise<{ ok: boolean; sub?: unknown; exp?: unknown; iat?: unknown; email?: unknown }> {
  try {
    const { payload } = await jwtVerify(token, KEY, { algorithms: ['HS256'], requiredClaims: ['sub', 'exp'], clockTolerance: leeway });
    // pgbell's own rule on top: sub must be a non-empty string.
    if (typeof payload.sub !== 'string' || payload.sub === '') return { ok: false };
    return { ok: true, sub: payload.sub, exp: payload.exp, iat: typeof payload.iat === 'number' ? payload.iat : 0, email: typeof payload.email === 'string' ? payload.email : null };
  } catch {
    return { ok: false };
  }
}

const now = () => Math.floor(Date.now() / 1000);
/** Mostly near now (where expiry and leeway decide), sometimes absent or not a number. */
const claim = (base: number) =>
  fc.oneof(
    { arbitrary: fc.integer({ min: base - 35, max: base + 35 }), weight: 6 },
    { arbitrary: fc.integer({ min: base - 3600, max: base + 3600 }), weight: 2 },
    { arbitrary: fc.constantFrom(undefined, 'soon', null), weight: 1 },
  );

const token = fc.record({
  alg: fc.constantFrom('HS256', 'HS256', 'HS256', 'HS256', 'HS384', 'HS512'),
  otherKey: fc.constantFrom(false, false, false, true),
  sub: fc.oneof({ arbitrary: fc.string({ minLength: 1, maxLength: 12 }), weight: 6 }, { arbitrary: fc.constantFrom(undefined, '', 42), weight: 1 }),
  exp: claim(now()),
  nbf: fc.oneof({ arbitrary: fc.constant(undefined), weight: 3 }, { arbitrary: claim(now()), weight: 1 }),
  iat: fc.oneof({ arbitrary: fc.constant(undefined), weight: 1 }, { arbitrary: claim(now()), weight: 3 }),
  email: fc.oneof(fc.constant(undefined), fc.emailAddress(), fc.constant(7)),
  crit: fc.constantFrom(false, false, false, false, true),
  tamper: fc.oneof({ arbitrary: fc.constant('none'), weight: 12 }, { arbitrary: fc.constantFrom('payload', 'signature', 'truncate', 'garbage', 'extra-part', 'bad-char'), weight: 3 }),
  leeway: fc.constantFrom(0, 30),
});

type Spec = typeof token extends fc.Arbitrary<infer T> ? T : never;

async function make(t: Spec): Promise<string> {
  const payload: Record<string, unknown> = {};
  for (const k of ['sub', 'exp', 'nbf', 'iat', 'email'] as const) if (t[k] !== undefined) payload[k] = t[k];
  const header: Record<string, unknown> = { alg: t.alg, typ: 'JWT' };
  if (t.crit) Object.assign(header, { crit: ['exp'] });
  let jwt: string;
  try {
    jwt = await new SignJWT(payload).setProtectedHeader(header as { alg: string }).sign(t.otherKey ? OTHER : KEY);
  } catch {
    // jose refuses to sign some headers (crit): hand-make those.
    const enc = (o: unknown) => base64url.encode(JSON.stringify(o));
    jwt = `${enc(header)}.${enc(payload)}.${base64url.encode(new Uint8Array(32))}`;
  }
  const [h, p, s] = jwt.split('.') as [string, string, string];
  switch (t.tamper) {
    case 'payload':
      return `${h}.${base64url.encode(JSON.stringify({ ...payload, sub: 'mallory' }))}.${s}`;
    case 'signature':
      return `${h}.${p}.${s.slice(0, -2)}${s.endsWith('AA') ? 'BB' : 'AA'}`;
    case 'truncate':
      return `${h}.${p}`;
    case 'garbage':
      return 'not.a.jwt';
    case 'extra-part':
      return `${jwt}.x`;
    case 'bad-char':
      return `${h}.${p}.${s}!`;
    default:
      return jwt;
  }
}

describe('HS256 verification agrees with jose', () => {
  it('accepts and refuses the same tokens, with the same session', async () => {
    await fc.assert(
      fc.asyncProperty(token, async (t) => {
        const jwt = await make(t);
        const mine = await verifySessionToken(jwt, KEY, { leewaySeconds: t.leeway });
        const theirs = await joseSays(jwt, t.leeway);
        expect(mine.ok, `${jwt}: ${mine.ok ? 'accepted' : mine.reason}`).toBe(theirs.ok);
        if (mine.ok) expect(mine.session).toEqual({ userId: theirs.sub, email: theirs.email, exp: theirs.exp, iat: theirs.iat });
      }),
      { numRuns: 2000 },
    );
  });

  it('a valid token passes and its reasons stay readable', async () => {
    const good = await new SignJWT({ email: 'a@example.test' }).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setIssuedAt().setExpirationTime('1h').sign(KEY);
    const r = await verifySessionToken(good, KEY);
    expect(r.ok && r.session.userId).toBe('alice');
    expect(await verifySessionToken(good, OTHER)).toEqual({ ok: false, reason: 'signature does not match SESSION_SECRET' });
    const expired = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setExpirationTime(now() - 10).sign(KEY);
    expect(await verifySessionToken(expired, KEY)).toEqual({ ok: false, reason: 'token expired' });
    const hs512 = await new SignJWT({}).setProtectedHeader({ alg: 'HS512' }).setSubject('alice').setExpirationTime('1h').sign(KEY);
    expect(await verifySessionToken(hs512, KEY)).toEqual({ ok: false, reason: 'algorithm not allowed (only HS256)' });
  });
});
