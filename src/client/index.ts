/**
 * `pgbell/client`: the browser side, framework-free (browsers and Node). It loads the list over
 * HTTP, goes live over the WebSocket from the list's cursor, keeps `alerts` / `unread` / `status`,
 * reconnects with exponential backoff and full jitter, and polls `GET /alerts?after=` while the
 * socket is down. Where WebSocket cannot connect (a proxy that refuses upgrades), it streams the
 * same messages over Server-Sent Events (`streamUrl`) before falling back to polling. The tabs of
 * one user share one connection (tabs.ts), and a socket that may have died unseen (the network
 * back, the page shown again, the device awake) is checked at once (wake.ts).
 *
 * client.ts      the state machine: list, socket, stream, polling, the leader's and followers' sides
 * counts.ts      the counts read from the server and adjusted for a change shown before it confirms
 * list.ts        the list's order, the poll's page bound, the archived ids remembered
 * http.ts        a request to `pollUrl` with the token (again on a 401), and its JSON body
 * connection.ts  the socket's auth message, the stream's URL and event names
 * tabs.ts        leader election (Web Locks) and the tabs' channel (BroadcastChannel)
 * wake.ts        the browser events after which a socket may be dead
 * types.ts       state, options, events; util.ts: backoff and token reading
 */
import { PgbellClient } from './client.js';
import type { ClientOptions } from './types.js';

export { PgbellClient } from './client.js';
export type { Alert, ArchiveTarget, ChannelConstructor, ChannelLike, ClientOptions, EventSourceConstructor, EventSourceLike, Events, LocksLike, Role, SocketConstructor, SocketLike, State, Status, Transport, TypeCounts } from './types.js';
export { backoffDelay, tokenExpiry, tokenSubject } from './util.js';

export function createClient(options: ClientOptions): PgbellClient {
  return new PgbellClient(options);
}
