/**
 * Every message on the wire, both directions. Inbound messages are parsed with zod before
 * anything else touches them; outbound ones are typed so the server cannot drift from the docs.
 */
import { z } from 'zod';
import type { ErrorCode } from './errors.js';

export const AuthMessage = z.object({
  type: z.literal('auth'),
  token: z.string().min(1, 'token must be a non-empty string').max(8192, 'token is longer than 8192 characters'),
});
export const PingMessage = z.object({ type: z.literal('ping') });

export const ClientMessage = z.discriminatedUnion('type', [AuthMessage, PingMessage]);
export type ClientMessage = z.infer<typeof ClientMessage>;

/** An alert as clients receive it: createdAt as ISO-8601, data as JSON. */
export interface WireAlert {
  id: string;
  userId: string;
  type: string;
  title: string;
  message: string;
  link: string | null;
  data: unknown;
  read: boolean;
  createdAt: string;
}

export type ServerMessage =
  | { type: 'ready'; userId: string; email: string | null }
  | { type: 'notification'; alert: WireAlert }
  | { type: 'pong' }
  | { type: 'error'; code: ErrorCode; message: string };

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
