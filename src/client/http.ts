/**
 * The client's HTTP side (`pollUrl`): one request with the bearer token, asked for again once on
 * a 401, and a response's JSON body, thrown as an error when the status is not ok. Separate from
 * client.ts because it needs none of the state machine, only the options and a token.
 */
import type { ClientOptions } from './types.js';

/** The `types` query parameter of the filter (nothing when every type is wanted). */
export function typesParam(types: readonly string[]): string {
  return types.length ? `&types=${encodeURIComponent(types.join(','))}` : '';
}

/** `pollUrl` + `suffix` with `token` (or, if none yet, a fresh one); a 401 asks `getToken` once more. */
export async function request(o: ClientOptions, token: string | undefined, getToken: () => Promise<string>, suffix: string, init: RequestInit = {}): Promise<Response> {
  const f = o.fetch ?? globalThis.fetch;
  const base = o.pollUrl!.replace(/\/+$/, '');
  const url = suffix.startsWith('?') ? `${base}${suffix}` : `${base}${suffix}`;
  let res = await f(url, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${token ?? (await getToken())}` } });
  if (res.status === 401) res = await f(url, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${await getToken()}` } });
  return res;
}

export async function readJson(res: Response): Promise<unknown> {
  const body = (await res.json()) as { error?: string; message?: string };
  if (!res.ok) throw new Error(`${res.status} ${body.error ?? ''}: ${body.message ?? ''}`);
  return body;
}
