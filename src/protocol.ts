/**
 * Every message on the wire, both directions. Inbound messages are parsed with zod before
 * anything else touches them; outbound ones are typed so the server cannot drift from the docs.
 */
import { z } from 'zod';
import { ErrorCodes, type ErrorCode } from './errors.js';

/** Postgres text cannot hold U+0000: such an id or type is bad input, not a database failure. */
const noNul = (s: string) => !s.includes('\u0000');

export const AuthMessage = z.object({
  type: z.literal('auth'),
  token: z.string().min(1, 'token must be a non-empty string').max(8192, 'token is longer than 8192 characters'),
  /** The last cursor the client received: resume from there. */
  after: z.string().min(1, 'after must be a cursor string').max(2048, 'after is longer than 2048 characters').optional(),
  /** Only alerts of these types (empty or absent: all). */
  types: z.lazy(() => AlertTypes).optional(),
  /** The client understands `notifications` (several new alerts in one frame). */
  batch: z.boolean().optional(),
});
export const PingMessage = z.object({ type: z.literal('ping') });

/** A category filter: alert `type` values. */
export const AlertTypes = z
  .array(z.string().min(1, 'types must be non-empty strings').max(100, 'a type is longer than 100 characters').refine(noNul, 'a type must not contain a NUL character'))
  .max(50, 'at most 50 types');
export const SubscribeMessage = z.object({ type: z.literal('subscribe'), types: AlertTypes });

/** An alert id, as a client may send one (GET /alerts?before=). */
export const AlertId = z.string().min(1, 'an alert id must be non-empty').max(200, 'an id is longer than 200 characters').refine(noNul, 'an id must not contain a NUL character');

/** Alert ids, as a client may send them (socket `read` and POST /alerts/read). */
export const AlertIds = z
  .array(z.string().min(1, 'ids must be non-empty strings').max(200, 'an id is longer than 200 characters').refine(noNul, 'an id must not contain a NUL character'))
  .min(1, 'ids must not be empty')
  .max(1000, 'at most 1000 ids per message');

/** Exactly one of `ids` and `all: true`. */
export const ReadRequest = z.union(
  [z.object({ ids: AlertIds }).strict(), z.object({ all: z.literal(true) }).strict()],
  { error: 'expected {"ids":["<alert id>", ...]} or {"all":true}' },
);
/** POST /alerts/seen: exactly one of `ids` and `all: true`. */
export const SeenRequest = ReadRequest;
/** POST /alerts/archive: `ids`, every read alert (`read: true`) or every alert (`all: true`). */
export const ArchiveRequest = z.union(
  [z.object({ ids: AlertIds }).strict(), z.object({ read: z.literal(true) }).strict(), z.object({ all: z.literal(true) }).strict()],
  { error: 'expected {"ids":["<alert id>", ...]}, {"read":true} or {"all":true}' },
);
/** PUT /alerts/preferences: the whole set of muted types. */
export const PreferencesRequest = z.object({ muted: AlertTypes }, { error: 'expected {"muted":["<type>", ...]}' }).strict();

/** POST /alerts/unarchive: `ids` only. */
export const UnarchiveRequest = z.object({ ids: AlertIds }, { error: 'expected {"ids":["<alert id>", ...]}' }).strict();

export const ReadMessage = z.object({
  type: z.literal('read'),
  ids: AlertIds.optional(),
  all: z.literal(true, 'all must be true').optional(),
}).refine((m) => (m.ids === undefined) !== (m.all === undefined), 'send either "ids" or "all": true');

export const ClientMessage = z.discriminatedUnion('type', [AuthMessage, PingMessage, ReadMessage, SubscribeMessage]);
export type ClientMessage = z.infer<typeof ClientMessage>;

/** An alert as clients receive it: createdAt as ISO-8601, data as JSON. */
export const WireAlert = z.object({
  id: z.string(),
  userId: z.string(),
  type: z.string(),
  title: z.string(),
  message: z.string(),
  link: z.string().nullable(),
  /** The row's `data` (jsonb), or on an installed table the row itself. */
  data: z.unknown(),
  read: z.boolean(),
  /** The user has seen it in the bell (an alert read is also seen). */
  seen: z.boolean(),
  /** Archived: out of the default list and every count (GET /alerts?archived=1 lists them). */
  archived: z.boolean(),
  createdAt: z.string().describe('ISO-8601'),
});
export type WireAlert = z.infer<typeof WireAlert>;

const cursor = z.string().describe('what to send as `after` (or Last-Event-ID) when reconnecting');
const unread = z.number().int().nonnegative().describe("the user's unread count (of the subscribed types, archived alerts left out) as of the read that produced the message");
const unseen = z.number().int().nonnegative().describe('of the unread alerts, those not seen yet (the "new since you last opened the bell" badge)');
const byType = z
  .record(z.string(), z.object({ unread: z.number().int().nonnegative(), unseen: z.number().int().nonnegative() }))
  .describe('the same counts per alert type (of the subscribed types); a type with nothing unread is absent');
/** The counts every message that carries counts carries. */
const counts = { unread, unseen, byType };
const errorCode = z.enum(Object.keys(ErrorCodes) as [ErrorCode, ...ErrorCode[]]);

/**
 * Every message the server sends. `unread` is the user's unread count as of the read that
 * produced the message; `cursor` is what to send as `after` when reconnecting. Replayed
 * messages carry the cursor the client resumed from: it only moves past them with `synced`.
 */
export const ServerMessage = z.discriminatedUnion('type', [
  z.object({ type: z.literal('ready'), userId: z.string(), email: z.string().nullable(), ...counts }),
  z.object({ type: z.literal('notification'), alert: WireAlert, ...counts, cursor }),
  /** Only to sockets that sent `batch: true`: new alerts that reached it in the same moment, oldest first. */
  z.object({ type: z.literal('notifications'), alerts: z.array(WireAlert), ...counts, cursor }),
  z.object({ type: z.literal('update'), alert: WireAlert, ...counts, cursor }),
  z.object({ type: z.literal('delete'), id: z.string(), ...counts, cursor }),
  /** The user's muted types changed (the whole set): drop alerts of those types; reload the list when a type was unmuted. */
  z.object({ type: z.literal('preferences'), muted: z.array(z.string()), ...counts, cursor }),
  z.object({ type: z.literal('synced'), cursor, ...counts }),
  z.object({ type: z.literal('reset'), reason: z.string() }),
  z.object({ type: z.literal('subscribed'), types: z.array(z.string()), ...counts }),
  z.object({ type: z.literal('token_expiring'), exp: z.number().int().describe('the token expires at this time (seconds since the epoch)') }),
  z.object({ type: z.literal('pong') }),
  z.object({ type: z.literal('error'), code: errorCode, message: z.string() }),
]);
export type ServerMessage = z.infer<typeof ServerMessage>;

export type ParseResult = { ok: true; message: ClientMessage } | { ok: false; reason: string };

/** Parses one inbound text frame. Never throws: a bad frame yields a reason a human can act on. */
export function parseClientMessage(text: string): ParseResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'message is not valid JSON' };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return { ok: false, reason: 'message must be a JSON object with a "type" field' };
  }
  const type = (json as { type?: unknown }).type;
  if (typeof type !== 'string') return { ok: false, reason: 'message has no string "type" field' };
  const parsed = ClientMessage.safeParse(json);
  if (parsed.success) return { ok: true, message: parsed.data };
  const known = ClientMessage.options.map((o) => o.shape.type.value);
  if (!known.includes(type as never)) {
    return { ok: false, reason: `unknown message type ${JSON.stringify(type.slice(0, 40))}; expected one of ${known.join(', ')}` };
  }
  const issue = parsed.error.issues[0]!;
  const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
  return { ok: false, reason: `invalid "${type}" message: ${where}${issue.message}` };
}
