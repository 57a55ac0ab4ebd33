/**
 * How the /alerts routes answer: JSON bodies never cached, errors as {"error": <code>,
 * "message": <what to do>} with the codes of src/errors.ts, and CORS for the origins allowed.
 * Shared by the list and paging routes (alerts.ts) and the state routes (state.ts).
 */
import type { z } from 'zod';
import type { HttpErrorCode } from '../errors.js';
import { originAllowed } from './origin.js';

/** Largest POST body accepted. */
export const MAX_BODY_BYTES = 64 * 1024;

export function corsHeaders(origin: string | null, allowed: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = { vary: 'Origin' };
  if (origin === null) return headers;
  if (!originAllowed(origin, allowed)) return headers;
  headers['access-control-allow-origin'] = allowed.includes('*') ? '*' : origin;
  headers['access-control-allow-methods'] = 'GET, POST, PUT, OPTIONS';
  headers['access-control-allow-headers'] = 'authorization, content-type';
  headers['access-control-max-age'] = '600';
  return headers;
}

export function json(status: number, body: unknown, headers: Record<string, string>): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...headers, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
  });
}

export function error(status: number, code: HttpErrorCode, message: string, headers: Record<string, string>): Response {
  return json(status, { error: code, message }, headers);
}

/**
 * A POST or PUT body read and checked against `schema`: the value, or the response that says
 * what is wrong (413 over MAX_BODY_BYTES, 400 for JSON that does not parse, naming `expect`, or
 * 400 naming the first bad field).
 */
export async function readBody<T>(req: Request, schema: z.ZodType<T>, expect: string, cors: Record<string, string>): Promise<{ ok: true; value: T } | { ok: false; response: Response }> {
  const text = await req.text();
  if (Buffer.byteLength(text) > MAX_BODY_BYTES) return { ok: false, response: error(413, 'payload_too_large', `body is larger than ${MAX_BODY_BYTES} bytes`, cors) };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return { ok: false, response: error(400, 'bad_request', `body is not valid JSON; send ${expect}`, cors) };
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
    return { ok: false, response: error(400, 'bad_request', `${where}${issue.message}`, cors) };
  }
  return { ok: true, value: parsed.data };
}
