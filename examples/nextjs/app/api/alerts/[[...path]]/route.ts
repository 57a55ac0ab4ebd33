/**
 * pgbell's read side at /api/alerts (the list, the polling fallback when the socket is down, and
 * POST /api/alerts/read): the same fetch-style handler the daemon serves, no adapter.
 */
import { alertsHandler, secretKey } from 'pgbell';
import { pgbellDb } from '@/lib/db';

export const dynamic = 'force-dynamic';

const handler = alertsHandler({ db: pgbellDb, key: secretKey(process.env.SESSION_SECRET!), allowedOrigins: [], maxReplay: 10_000 });
export { handler as GET, handler as POST, handler as OPTIONS };
