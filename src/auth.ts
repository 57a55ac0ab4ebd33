/**
 * Session tokens: HS256 JWTs with `sub` (user id, required), `exp` (required) and an optional
 * `email`. The algorithm is pinned, so `alg: none` and every other algorithm are refused.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, SignJWT, errors } from 'jose';

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
    const r = verifyWith(token, key, opts);
    // Only a signature mismatch is worth trying the next key for.
    if (r.ok || r.reason !== SIGNATURE_MISMATCH) return r;
    first ??= r;
  }
  return first ?? { ok: false, reason: 'no key configured' };
}

const SIGNATURE_MISMATCH = 'signature does not match SESSION_SECRET';
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Verifies one token against one key. The signature is checked with node:crypto's HMAC, which
 * is synchronous and takes a few microseconds; jose's verification goes through WebCrypto,
 * whose job cost about 150 µs of the main thread per token (10% of the daemon's CPU while
 * 10,000 sockets authenticated). jose still parses the token and signs, and the tests check
 * that this agrees with jose's own jwtVerify on valid, forged, expired and malformed tokens.
 */
function verifyWith(token: string, key: Uint8Array, opts: VerifyOptions): VerifyResult {
  try {
    // Parses (and refuses malformed) header and payload, the way jose's verification would.
    const header = decodeProtectedHeader(token);
    const payload = decodeJwt(token);
    if (header.alg !== 'HS256') return { ok: false, reason: 'algorithm not allowed (only HS256)' };
    // Extensions this verifier does not implement are refused, as RFC 7515 requires.
    if (header.crit !== undefined) return { ok: false, reason: 'ERR_JOSE_NOT_SUPPORTED: crit header parameters are not supported' };
    if (header.b64 !== undefined && header.b64 !== true) return { ok: false, reason: 'ERR_JWT_INVALID: JWTs MUST NOT use unencoded payload' };
    const dot = token.lastIndexOf('.');
    const signature = token.slice(dot + 1);
    // Buffer's base64url decoding skips characters it does not know; jose's refuses them.
    if (!/^[A-Za-z0-9_-]*$/.test(signature)) return { ok: false, reason: 'ERR_JWS_INVALID: Failed to base64url decode the signature' };
    const given = Buffer.from(signature, 'base64url');
    const expected = createHmac('sha256', key).update(token.slice(0, dot)).digest();
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: SIGNATURE_MISMATCH };
    const now = Math.floor(Date.now() / 1000);
    const tolerance = opts.leewaySeconds ?? 0;
    for (const claim of ['sub', 'exp'] as const) if (payload[claim] === undefined) return { ok: false, reason: `claim ${claim}: missing required "${claim}" claim` };
    for (const claim of ['exp', 'nbf', 'iat'] as const) {
      const v = payload[claim];
      if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v))) return { ok: false, reason: `claim ${claim}: "${claim}" claim must be a number` };
    }
    if (typeof payload.sub !== 'string') return { ok: false, reason: 'claim sub: "sub" claim must be a string' };
    if (payload.nbf !== undefined && payload.nbf > now + tolerance) return { ok: false, reason: 'claim nbf: "nbf" claim timestamp check failed' };
    if (payload.exp! <= now - tolerance) return { ok: false, reason: 'token expired' };
    if (payload.sub === '') return { ok: false, reason: 'sub claim is empty' };
    // A user id is compared with the table's text: Postgres refuses U+0000 in text (every read
    // naming this user would fail), and no app's user id holds a control character.
    if (CONTROL.test(payload.sub)) return { ok: false, reason: 'sub claim contains a control character' };
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
