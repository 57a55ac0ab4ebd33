/**
 * The app's own sign-in, as the seed's app does it: an HMAC-SHA256-signed session cookie
 * (`<base64url JSON>.<signature>`), keyed by COOKIE_SECRET. pgbell never sees this cookie; the
 * app turns it into a short-lived pgbell token in app/api/pgbell-token/route.ts.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { cookies } from 'next/headers';

export const COOKIE = 'session';
const TTL_SECONDS = 7 * 24 * 3600;

export interface Session {
  userId: string;
  email: string;
}

function secret(): string {
  const s = process.env.COOKIE_SECRET;
  if (!s || s.length < 32) throw new Error('COOKIE_SECRET must be set to at least 32 characters');
  return s;
}

const sign = (body: string) => createHmac('sha256', secret()).update(body).digest('base64url');

export function seal(session: Session): string {
  const body = Buffer.from(JSON.stringify({ ...session, exp: Math.floor(Date.now() / 1000) + TTL_SECONDS })).toString('base64url');
  return `${body}.${sign(body)}`;
}

export function unseal(value: string | undefined): Session | null {
  const [body, sig] = (value ?? '').split('.');
  if (!body || !sig) return null;
  const want = Buffer.from(sign(body));
  const got = Buffer.from(sig);
  if (want.length !== got.length || !timingSafeEqual(want, got)) return null;
  const data = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Session & { exp: number };
  return data.exp > Date.now() / 1000 ? { userId: data.userId, email: data.email } : null;
}

/** The signed-in user, from the request's cookie; null if none or not valid. */
export async function currentUser(): Promise<Session | null> {
  return unseal((await cookies()).get(COOKIE)?.value);
}

export const cookieOptions = { httpOnly: true, sameSite: 'lax' as const, path: '/', maxAge: TTL_SECONDS };
