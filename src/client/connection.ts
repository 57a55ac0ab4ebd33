/**
 * What opens a live connection, over either transport: the WebSocket's auth message and the
 * event stream's URL, both resuming from the cursor with the filter, and the names the socket and
 * the stream use. Pure; client.ts opens, watches and closes the connection itself.
 */

/** A WebSocket's readyState when open. */
export const OPEN = 1;

/** The event names of the stream (each server message's type). */
export const STREAM_EVENTS = ['ready', 'synced', 'notification', 'notifications', 'update', 'delete', 'reset', 'subscribed', 'token_expiring', 'error'];

/** The socket's first message: the token, batches, and where to resume from with which types. */
export function authMessage(token: string, cursor: string | undefined, types: string[]): string {
  return JSON.stringify({ type: 'auth', token, batch: true, ...(cursor ? { after: cursor } : {}), ...(types.length ? { types } : {}) });
}

/** The stream's URL (GET /alerts/stream): the same as the socket's auth, in the query. */
export function streamUrlFor(streamUrl: string, token: string, cursor: string | undefined, types: string[]): string {
  const url = new URL(streamUrl);
  url.searchParams.set('token', token);
  url.searchParams.set('batch', '1');
  if (cursor) url.searchParams.set('after', cursor);
  if (types.length) url.searchParams.set('types', types.join(','));
  return url.toString();
}
