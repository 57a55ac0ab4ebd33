/**
 * GET: a pgbell session token for the signed-in user, signed with the daemon's SESSION_SECRET.
 * Short-lived: pgbell/client asks again when it reconnects and before it expires.
 */
import { secretKey, signSessionToken } from 'pgbell';
import { currentUser } from '@/lib/session';

export const dynamic = 'force-dynamic';

export async function GET() {
  const user = await currentUser();
  if (!user) return Response.json({ error: 'unauthorized' }, { status: 401 });
  const token = await signSessionToken(secretKey(process.env.SESSION_SECRET!), { userId: user.userId, email: user.email, ttlSeconds: 600 });
  return Response.json({ token }, { headers: { 'cache-control': 'no-store' } });
}
