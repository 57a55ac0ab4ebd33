/**
 * POST /alerts/seen, /alerts/archive and /alerts/unarchive, and GET|PUT /alerts/preferences:
 * the body checked, then one statement per batch (db/state.ts). The response says how many
 * alerts changed (and how many a writer held throughout, `pending`); an id that is not one of the
 * user's alerts refuses the whole request with 404 and changes nothing. The change itself
 * streams to every tab of the user like any other change, so the response carries no counts.
 */
import type { Db } from '../db/connect.js';
import { mutedTypes, setMutedTypes } from '../db/alerts.js';
import { changeState, type StateChange } from '../db/state.js';
import { ArchiveRequest, PreferencesRequest, SeenRequest, UnarchiveRequest } from '../protocol.js';
import { error, json, readBody } from './responses.js';

export const STATE_ROUTES = ['seen', 'archive', 'unarchive'] as const;
export type StateRoute = (typeof STATE_ROUTES)[number];

const SHAPES = {
  seen: { schema: SeenRequest, expect: '{"ids":[…]} or {"all":true}' },
  archive: { schema: ArchiveRequest, expect: '{"ids":[…]}, {"read":true} or {"all":true}' },
  unarchive: { schema: UnarchiveRequest, expect: '{"ids":[…]}' },
} as const;

export async function changeStateRoute(db: Db, route: StateRoute, req: Request, userId: string, cors: Record<string, string>): Promise<Response> {
  const parsed = await readBody<unknown>(req, SHAPES[route].schema, SHAPES[route].expect, cors);
  if (!parsed.ok) return parsed.response;
  const b = parsed.value as { ids?: string[]; all?: true; read?: true };
  const ids = b.ids ?? null;
  const change: StateChange = route === 'seen' ? { op: 'seen', ids } : route === 'archive' ? { op: 'archive', ids, onlyRead: b.read === true } : { op: 'unarchive', ids: ids! };
  const done = await changeState(db, userId, change);
  if (done === null) return error(404, 'unknown_alert', 'ids: not every id is an alert of this user (deleted, or not theirs); nothing was changed', cors);
  // `pending`: alerts a writer held locked for the whole time; they were not changed (retry).
  return json(200, done.pending > 0 ? done : { updated: done.updated }, cors);
}

/**
 * GET /alerts/preferences → {"muted":[…]}; PUT sets the whole set (answering with it as
 * stored) and streams it to every tab of the user. With ALERT_TYPES set, a type outside it is
 * refused with 400 and nothing changes.
 */
export async function preferencesRoute(db: Db, req: Request, userId: string, known: readonly string[], cors: Record<string, string>): Promise<Response> {
  if (req.method === 'GET') return json(200, { muted: await mutedTypes(db, userId) }, cors);
  const parsed = await readBody(req, PreferencesRequest, '{"muted":["<type>", ...]}', cors);
  if (!parsed.ok) return parsed.response;
  const unknown = known.length === 0 ? [] : parsed.value.muted.filter((t) => !known.includes(t));
  if (unknown.length > 0) return error(400, 'bad_request', `muted: unknown type ${JSON.stringify(unknown[0])}; the types are ${known.join(', ')}`, cors);
  return json(200, { muted: await setMutedTypes(db, userId, parsed.value.muted) }, cors);
}
