/**
 * The read side over HTTP, as one function from a web-standard Request to a Response: the
 * daemon serves it, and an app can mount the same function (a Next.js route handler, Hono,
 * Deno, anything with fetch-style handlers).
 *
 *   GET  …/alerts?limit=50       newest first, the counts, and a cursor to go live from
 *   GET  …/alerts?before=<id>    the next older page, below that alert (`more`: another follows)
 *   GET  …/alerts?archived=1     the archived alerts instead (with the same paging)
 *   GET  …/alerts?after=<cursor> changes since the cursor, oldest first (the polling fallback)
 *   (all take &types=a,b: only alerts of those types, and their counts)
 *   POST …/alerts/read           {"ids":[…]} or {"all":true}
 *   POST …/alerts/seen           {"ids":[…]} or {"all":true}
 *   POST …/alerts/archive        {"ids":[…]}, {"read":true} or {"all":true}
 *   POST …/alerts/unarchive      {"ids":[…]}
 *   GET|PUT …/alerts/preferences {"muted":[…types]}
 *
 * Routes match on the end of the path, so the handler works under any prefix.
 */
import { z } from 'zod';
import { verifySessionToken } from '../auth.js';
import { CursorState, decodeCursor, resumeProblem } from '../delivery/cursor.js';
import { alertPage, changesSince, countsOf, markRead, sendable, type Change, type SinceBatch } from '../db/changes.js';
import type { Db } from '../db/connect.js';
import { revokedBefore } from '../db/users.js';
import { ReadNotTrackedError, type HttpErrorCode } from '../errors.js';
import { AlertId, AlertTypes, ReadRequest, type WireAlert } from '../protocol.js';
import { mayHold, shown } from '../delivery/messages.js';
import { corsHeaders, error, json, readBody } from './responses.js';
import { changeStateRoute, preferencesRoute, STATE_ROUTES, type StateRoute } from './state.js';

/** The paths this handler answers at the root (an app may mount it under any prefix). */
export const ALERTS_PATHS: ReadonlySet<string> = new Set(['/alerts', '/alerts/read', '/alerts/seen', '/alerts/archive', '/alerts/unarchive', '/alerts/preferences']);

export const DEFAULT_LIST_LIMIT = 50;
export const MAX_LIST_LIMIT = 200;
/** Rows and (about) bytes of one `?after=` response; `more: true` says there is another page. */
export const REPLAY_PAGE_ROWS = 500;
export const REPLAY_PAGE_BYTES = 1 << 20;
export { MAX_BODY_BYTES } from './responses.js';

export interface AlertsHandlerOptions {
  db: Db;
  /** HS256 key(s) that verify session tokens (the current one, then previous ones). */
  key: Uint8Array | readonly Uint8Array[];
  /** Clock skew allowed on token expiry (default 30 s). */
  leewaySeconds?: number;
  /** Origins allowed to call from a browser (CORS); `*` allows any. */
  allowedOrigins: readonly string[];
  /** More changes than this since a cursor → 410 cursor_reset. */
  maxReplay: number;
  /**
   * Asked once per authenticated request: null lets it through, a number refuses it with 429
   * and that Retry-After (the daemon's per-user rate limit).
   */
  admit?: (userId: string) => number | null;
  /** The alert types a user may mute; empty: any. */
  alertTypes?: readonly string[];
  /** Told of a database error that became a 503 (the daemon logs it). */
  onError?: (err: Error) => void;
}

export type AlertsHandler = (req: Request) => Promise<Response>;

const Limit = z.coerce
  .number({ error: 'limit must be a whole number' })
  .int('limit must be a whole number')
  .min(1, 'limit must be at least 1')
  .max(MAX_LIST_LIMIT, `limit must be at most ${MAX_LIST_LIMIT}`);

export function alertsHandler(opts: AlertsHandlerOptions): AlertsHandler {
  return async (req) => {
    const url = new URL(req.url);
    const cors = corsHeaders(req.headers.get('origin'), opts.allowedOrigins);
    const path = url.pathname.replace(/\/+$/, '');
    const action = /\/alerts\/([a-z]+)$/.exec(path)?.[1];
    const route: 'list' | 'read' | 'preferences' | StateRoute | null =
      action === 'read' || action === 'preferences'
        ? action
        : action !== undefined && (STATE_ROUTES as readonly string[]).includes(action)
          ? (action as StateRoute)
          : path.endsWith('/alerts')
            ? 'list'
            : null;
    if (route === null) return error(404, 'not_found', `no route for ${req.method} ${url.pathname}`, cors);
    if (req.method === 'OPTIONS') return new Response(null, { status: 204, headers: cors });
    const allowed = route === 'list' ? ['GET', 'HEAD'] : route === 'preferences' ? ['GET', 'PUT'] : ['POST'];
    if (!allowed.includes(req.method)) {
      return error(405, 'method_not_allowed', `use ${allowed[0]} ${url.pathname}`, { ...cors, allow: `${allowed.join(', ')}, OPTIONS` });
    }

    const auth = /^Bearer\s+(\S+)$/i.exec(req.headers.get('authorization') ?? '');
    if (!auth) return error(401, 'unauthorized', 'send the session token as "Authorization: Bearer <token>"', { ...cors, 'www-authenticate': 'Bearer' });
    const verified = await verifySessionToken(auth[1]!, opts.key, { leewaySeconds: opts.leewaySeconds ?? 30 });
    if (!verified.ok) return error(401, 'unauthorized', 'Invalid session token', { ...cors, 'www-authenticate': 'Bearer error="invalid_token"' });
    const userId = verified.session.userId;
    const wait = opts.admit?.(userId) ?? null;
    if (wait !== null) return error(429, 'rate_limited', 'too many requests for this user; retry later', { ...cors, 'retry-after': String(wait) });

    try {
      const revoked = (await revokedBefore(opts.db, [userId])).get(userId);
      if (revoked !== undefined && verified.session.iat <= revoked) return error(403, 'token_revoked', 'Session revoked; sign in again', cors);
      if (route === 'read') return await read(req, userId, cors);
      if (route === 'preferences') return await preferencesRoute(opts.db, req, userId, opts.alertTypes ?? [], cors);
      if (route !== 'list') return await changeStateRoute(opts.db, route, req, userId, cors);
      const typesParam = url.searchParams.get('types');
      const parsedTypes = AlertTypes.safeParse(typesParam === null ? [] : typesParam.split(',').filter(Boolean));
      if (!parsedTypes.success) return error(400, 'bad_request', `types: ${parsedTypes.error.issues[0]!.message}`, cors);
      const types = parsedTypes.data.length === 0 ? null : new Set(parsedTypes.data);
      const after = url.searchParams.get('after');
      const before = url.searchParams.get('before');
      if (after !== null && before !== null) return error(400, 'bad_request', 'send either after (changes since a cursor) or before (older alerts), not both', cors);
      const archivedParam = url.searchParams.get('archived');
      if (archivedParam !== null && !['0', '1', 'true', 'false'].includes(archivedParam)) return error(400, 'bad_request', 'archived must be 1 (the archived alerts) or 0 (the list, the default)', cors);
      const archived = archivedParam === '1' || archivedParam === 'true';
      if (after !== null && archived) return error(400, 'bad_request', 'archived=1 lists archived alerts; changes since a cursor (after) include every state change already', cors);
      if (after !== null) return await since(after, userId, types, cors);
      const limit = Limit.safeParse(url.searchParams.get('limit') ?? DEFAULT_LIST_LIMIT);
      if (!limit.success) return error(400, 'bad_request', limit.error.issues[0]!.message, cors);
      if (before !== null) {
        const id = AlertId.safeParse(before);
        if (!id.success) return error(400, 'bad_request', `before: ${id.error.issues[0]!.message}`, cors);
        return await older(id.data, limit.data, userId, types, archived, cors);
      }
      return await list(limit.data, userId, types, archived, cors);
    } catch (err) {
      // The database's own words stay in the server's log: they can name tables, roles and hosts.
      opts.onError?.(err as Error);
      return error(503, 'unavailable', 'the database is unavailable; retry shortly', { ...cors, 'retry-after': '1' });
    }
  };

  async function list(limit: number, userId: string, types: ReadonlySet<string> | null, archived: boolean, cors: Record<string, string>): Promise<Response> {
    // One snapshot for the list and the cursor: going live from this cursor misses nothing
    // the list does not show and repeats nothing it does.
    const { page, changes } = await opts.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .setAccessMode('read only')
      .execute(async (trx) => ({ page: (await alertPage(trx, userId, limit, types, null, archived))!, changes: await changesSince(trx, [{ userId, after: null }], opts.maxReplay) }));
    // Never an id at or above the read's xmax (see Delivery's sync).
    const cursor = new CursorState(changes.xmin);
    for (const c of changes.changes) if (c.txid < changes.xmax) cursor.add(c.txid);
    return json(200, { alerts: page.alerts, ...countsOf(changes.unread.get(userId), types), cursor: cursor.encode(changes.epoch), more: page.more }, cors);
  }

  /**
   * The page below alert `before`. No unread count and no cursor: those come with the first
   * page and then the stream, which an older page's snapshot must not set back.
   */
  async function older(before: string, limit: number, userId: string, types: ReadonlySet<string> | null, archived: boolean, cors: Record<string, string>): Promise<Response> {
    const page = await alertPage(opts.db, userId, limit, types, before, archived);
    // The same answer whether the id exists for another user or not at all: nothing of other
    // users' alerts can be learnt from it.
    if (page === null) return error(404, 'unknown_alert', `before: no alert ${JSON.stringify(before)} of this user (deleted, or not theirs); page from an alert you hold`, cors);
    return json(200, { alerts: page.alerts, more: page.more }, cors);
  }

  async function since(after: string, userId: string, types: ReadonlySet<string> | null, cors: Record<string, string>): Promise<Response> {
    const decoded = decodeCursor(after);
    if (!decoded.ok) return error(410, 'cursor_reset', `${decoded.reason}; reload with GET /alerts`, cors);
    const from = decoded.cursor;
    // One page at most: a poll from an old cursor reads and sends REPLAY_PAGE_ROWS rows, not
    // every change since (the client asks again at once while `more` is true).
    const pageRows = Math.min(opts.maxReplay, REPLAY_PAGE_ROWS);
    let res = await changesSince(opts.db, [{ userId, after: from.horizon }], pageRows);
    let cut: bigint | null = res.cuts.get(userId) ?? null;
    // A page holding nothing new below its cut (the next transaction alone is larger than a
    // page) would hand the same cursor back for ever: that transaction is read whole (up to
    // maxReplay, beyond which the cursor is reset as before).
    if (cut !== null && pageRows < opts.maxReplay && !res.changes.some((c) => c.txid < cut! && !from.has(c.txid))) {
      res = await changesSince(opts.db, [{ userId, after: from.horizon }], opts.maxReplay);
      cut = null;
    }
    const reset = resumeProblem(from, decoded.epoch, cut === null ? res : { ...res, truncated: new Set() }, userId, opts.maxReplay);
    if (reset) return error(410, 'cursor_reset', `${reset}; reload with GET /alerts`, cors);
    let page = cut === null ? res.changes : res.changes.filter((c) => c.txid < cut!);
    // And at most about REPLAY_PAGE_BYTES, at a transaction's end (the first whole).
    let bytes = 0;
    for (let i = 0; i < page.length; i++) {
      const c = page[i]!;
      bytes += c.kind === 'alert' ? JSON.stringify(c.alert).length : c.kind === 'delete' ? c.id.length + 8 : 64;
      const txEnd = i + 1 === page.length || page[i + 1]!.txid !== page[i]!.txid;
      if (bytes > REPLAY_PAGE_BYTES && txEnd && i + 1 < page.length) {
        cut = page[i + 1]!.txid;
        page = page.slice(0, i + 1);
        break;
      }
    }
    // Muted types as of this read: the polling client applies `preferences` before the alerts.
    const muted = new Set(res.muted?.get(userId) ?? []);
    // An update the filter or a mute now leaves out goes as a delete: the client may hold the alert.
    const fresh = page.flatMap((c) => {
      if (from.has(c.txid) || !sendable(c)) return [];
      const s = shown({ types, muted }, c, mayHold(c, c.kind === 'alert' && from.has(c.insertTxid)));
      return s === null ? [] : [s];
    });
    // The horizon never passes what this page did not send: up to the cut when the cut is
    // below every running transaction, otherwise the read's own horizon with the ids sent.
    const next = new CursorState(cut === null || cut > res.xmin ? res.xmin : cut, from.ids);
    for (const c of page) if (c.txid < res.xmax) next.add(c.txid);
    return json(200, { ...split(fresh), ...countsOf(res.unread.get(userId), types), cursor: next.encode(res.epoch), more: cut !== null }, cors);
  }

  async function read(req: Request, userId: string, cors: Record<string, string>): Promise<Response> {
    const parsed = await readBody(req, ReadRequest, '{"ids":[…]} or {"all":true}', cors);
    if (!parsed.ok) return parsed.response;
    try {
      return json(200, { updated: await markRead(opts.db, userId, parsed.value) }, cors);
    } catch (err) {
      if (err instanceof ReadNotTrackedError) return error(409, 'read_not_tracked', err.message, cors);
      throw err;
    }
  }
}

/**
 * Changes as the polling client applies them: alerts to upsert by id, then ids to drop, and the
 * user's muted types when they changed (the last change of them in the page). The client
 * applies every upsert before every drop, so an id is in one list only, as its last change in
 * the page left it: a delete and re-insert of one id is the alert (sent in order, the tombstone
 * first), not a drop.
 */
function split(changes: Change[]): { alerts: WireAlert[]; deleted: string[]; preferences?: { muted: string[] } } {
  const last = new Map<string, Change>();
  let preferences: { muted: string[] } | undefined;
  for (const c of changes) {
    if (c.kind === 'alert') last.set(c.alert.id, c);
    else if (c.kind === 'delete') last.set(c.id, c);
    else preferences = { muted: c.muted };
  }
  const alerts: WireAlert[] = [];
  const deleted: string[] = [];
  for (const c of changes) {
    if (c.kind === 'alert' && last.get(c.alert.id) === c) alerts.push(c.alert);
    else if (c.kind === 'delete' && last.get(c.id) === c) deleted.push(c.id);
  }
  return { alerts, deleted, ...(preferences ? { preferences } : {}) };
}
