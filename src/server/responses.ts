/**
 * How the /alerts routes answer: JSON bodies never cached, errors as {"error": <code>,
 * "message": <what to do>} with the codes of src/errors.ts, and CORS for the origins allowed.
 * Shared by the list and paging routes (alerts.ts) and the state routes (state.ts).
 */
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
