/**
 * Session tokens: HS256 JWTs with `sub` (user id, required), `exp` (required) and an optional
 * `email`. The algorithm is pinned, so `alg: none` and every other algorithm are refused.
 */
import { webcrypto } from 'node:crypto';
import { jwtVerify, SignJWT, errors } from 'jose';

type CryptoKey = webcrypto.CryptoKey;

export interface Session {
  userId: string;
  email: string | null;
  /** Expiry, seconds since the epoch. */
  exp: number;
  /** Issued at, seconds since the epoch (0 if the token does not say: any revocation covers it). */
  iat: number;
}

export interface VerifyOptions {
  /** Clock skew allowed on `exp` and `nbf`, in seconds. */
  leewaySeconds?: number;
}

export type VerifyResult = { ok: true; session: Session } | { ok: false; reason: string };

const encoder = new TextEncoder();

export function secretKey(secret: string): Uint8Array {
  return encoder.encode(secret);
}

/**
 * Verifies a token against the current key and any previous ones (key rotation: the first key
 * signs, all of them verify); never throws. `reason` is for logs, not for the client.
 */
export async function verifySessionToken(token: string, keys: Uint8Array | readonly Uint8Array[], opts: VerifyOptions = {}): Promise<VerifyResult> {
  const list = keys instanceof Uint8Array ? [keys] : keys;
  let first: VerifyResult | undefined;
  for (const key of list) {
    const r = await verifyWith(token, key, opts);
    // Only a signature mismatch is worth trying the next key for.
    if (r.ok || r.reason !== SIGNATURE_MISMATCH) return r;
    first ??= r;
  }
  return first ?? { ok: false, reason: 'no key configured' };
}

const SIGNATURE_MISMATCH = 'signature does not match SESSION_SECRET';

/**
 * The secret imported once as a WebCrypto key: given raw bytes, jose imports them again on
 * every verification (a measurable share of authenticating 10,000 sockets).
 */
const imported = new WeakMap<Uint8Array, Promise<CryptoKey>>();
function cryptoKey(key: Uint8Array): Promise<CryptoKey> {
  let k = imported.get(key);
  if (!k) imported.set(key, (k = webcrypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['verify'])));
  return k;
}

async function verifyWith(token: string, key: Uint8Array, opts: VerifyOptions): Promise<VerifyResult> {
  try {
    const { payload } = await jwtVerify(token, await cryptoKey(key), { algorithms: ['HS256'], requiredClaims: ['sub', 'exp'], clockTolerance: opts.leewaySeconds ?? 0 });
    if (typeof payload.sub !== 'string' || payload.sub === '') return { ok: false, reason: 'sub claim is empty' };
    const email = typeof payload.email === 'string' ? payload.email : null;
    return { ok: true, session: { userId: payload.sub, email, exp: payload.exp!, iat: typeof payload.iat === 'number' ? payload.iat : 0 } };
  } catch (err) {
    return { ok: false, reason: describe(err) };
  }
}

function describe(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'token expired';
  if (err instanceof errors.JWSSignatureVerificationFailed) return SIGNATURE_MISMATCH;
  if (err instanceof errors.JOSEAlgNotAllowed) return 'algorithm not allowed (only HS256)';
  if (err instanceof errors.JWTClaimValidationFailed) return `claim ${err.claim}: ${err.message}`;
  if (err instanceof errors.JOSEError) return `${err.code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

/** Parses a duration like `90s`, `15m`, `1h`, `7d` (or bare seconds) into seconds. */
export function parseTtl(ttl: string): number {
  const m = /^(\d+)\s*(s|m|h|d)?$/.exec(ttl.trim());
  if (!m) throw new Error(`--ttl ${JSON.stringify(ttl)} is not a duration like 90s, 15m, 1h or 7d`);
  const n = Number(m[1]);
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  if (n <= 0) throw new Error('--ttl must be greater than zero');
  return n * unit;
}

export async function signSessionToken(
  key: Uint8Array,
  claims: { userId: string; email?: string | null; ttlSeconds: number },
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(claims.email ? { email: claims.email } : {})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(claims.userId)
    .setIssuedAt(now)
    .setExpirationTime(now + claims.ttlSeconds)
    .sign(key);
}
