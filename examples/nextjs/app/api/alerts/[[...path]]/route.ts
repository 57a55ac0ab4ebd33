/**
 * pgbell's read side at /api/alerts (the list, the polling fallback when the socket is down,
 * POST /api/alerts/read, /seen, /archive and /unarchive, GET and PUT /api/alerts/preferences):
 * the same fetch-style handler the daemon serves, no adapter.
 */
import { alertsHandler, secretKey } from 'pgbell';
import { pgbellDb } from '@/lib/db';

export const dynamic = 'force-dynamic';

const handler = alertsHandler({ db: pgbellDb, key: secretKey(process.env.SESSION_SECRET!), allowedOrigins: [], maxReplay: 10_000 });
export { handler as GET, handler as POST, handler as PUT, handler as OPTIONS };
