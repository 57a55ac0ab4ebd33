/**
 * POST /alerts/seen, /alerts/archive and /alerts/unarchive: the body checked, then one
 * statement (db/state.ts). The response says how many alerts changed; an id that is not one of
 * the user's alerts refuses the whole request with 404 and changes nothing. The change itself
 * streams to every tab of the user like any other change, so the response carries no counts.
 */
import type { Db } from '../db/connect.js';
import { changeState, type StateChange } from '../db/state.js';
import { ArchiveRequest, SeenRequest, UnarchiveRequest } from '../protocol.js';
import { error, json, MAX_BODY_BYTES } from './responses.js';

export const STATE_ROUTES = ['seen', 'archive', 'unarchive'] as const;
export type StateRoute = (typeof STATE_ROUTES)[number];

const SHAPES = {
  seen: { schema: SeenRequest, expect: '{"ids":[…]} or {"all":true}' },
  archive: { schema: ArchiveRequest, expect: '{"ids":[…]}, {"read":true} or {"all":true}' },
  unarchive: { schema: UnarchiveRequest, expect: '{"ids":[…]}' },
} as const;

export async function changeStateRoute(db: Db, route: StateRoute, req: Request, userId: string, cors: Record<string, string>): Promise<Response> {
  const text = await req.text();
  if (Buffer.byteLength(text) > MAX_BODY_BYTES) return error(413, 'payload_too_large', `body is larger than ${MAX_BODY_BYTES} bytes`, cors);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return error(400, 'bad_request', `body is not valid JSON; send ${SHAPES[route].expect}`, cors);
  }
  const parsed = SHAPES[route].schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
    return error(400, 'bad_request', `${where}${issue.message}`, cors);
  }
  const b = parsed.data as { ids?: string[]; all?: true; read?: true };
  const ids = b.ids ?? null;
  const change: StateChange = route === 'seen' ? { op: 'seen', ids } : route === 'archive' ? { op: 'archive', ids, onlyRead: b.read === true } : { op: 'unarchive', ids: ids! };
  const updated = await changeState(db, userId, change);
  if (updated === null) return error(404, 'unknown_alert', 'ids: not every id is an alert of this user (deleted, or not theirs); nothing was changed', cors);
  return json(200, { updated }, cors);
}
