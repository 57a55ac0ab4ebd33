/**
 * The client's public shapes: its state, its options, its events, and the parts of the browser
 * APIs it uses (so Node and tests can hand it their own implementations).
 */
import type { WireAlert } from '../protocol.js';

export type Status = 'connecting' | 'live' | 'polling' | 'offline';

/** An alert as the server sends it (a type-only import: nothing of the server is bundled). */
export type Alert = WireAlert;

export type Transport = 'websocket' | 'sse';

/**
 * This tab's part in sharing one connection between the tabs of a browser: `leader` holds the
 * socket (or the stream, or polls) for every tab of its user, a `follower` gets everything from
 * it; `solo` holds its own socket (no Web Locks or BroadcastChannel, or `shareTabs: false`).
 * Null until `start()` has found out.
 */
export type Role = 'leader' | 'follower' | 'solo';

/** One alert type's counts: alerts not read, and of those the ones not seen yet. */
export interface TypeCounts {
  unread: number;
  unseen: number;
}

/** What `archive()` archives: these ids, every read alert, or every alert. */
export type ArchiveTarget = readonly string[] | { read: true } | 'all';

export interface State {
  /** The list (archived alerts left out), newest first. */
  alerts: readonly Alert[];
  /** Alerts not read (of the subscribed types; archived ones left out). */
  unread: number;
  /** Of the unread alerts, those not seen yet: the "new since the bell was last opened" badge. */
  unseen: number;
  /** The same counts per alert type; a type with nothing unread is absent. */
  byType: Readonly<Record<string, TypeCounts>>;
  /**
   * The user's muted types (their alerts are not streamed, listed or counted, unless the filter
   * names them): null until known (`loadMuted()`, `setMuted()` or a change streamed).
   */
  muted: readonly string[] | null;
  /** Older alerts than `alerts` holds exist: `loadMore()` fetches the next page of them. */
  hasMore: boolean;
  status: Status;
  /** What the stream is carried by right now: a WebSocket or Server-Sent Events (null: neither). */
  transport: Transport | null;
  role: Role | null;
}

/** The part of the EventSource API the client uses: the browser's, or a package's in Node. */
export interface EventSourceLike {
  readonly readyState: number;
  close(): void;
  addEventListener(type: string, listener: (ev: { data?: unknown }) => void): void;
  onerror: ((ev: { data?: unknown }) => void) | null;
}
export type EventSourceConstructor = new (url: string) => EventSourceLike;

/** The part of the WebSocket API the client uses: the browser's, or the `ws` package's. */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type SocketConstructor = new (url: string) => SocketLike;

/** The part of the Web Locks API the client uses (`navigator.locks`). */
export interface LocksLike {
  request(name: string, options: { signal?: AbortSignal }, callback: () => Promise<unknown>): Promise<unknown>;
}

/** The part of BroadcastChannel the client uses. */
export interface ChannelLike {
  postMessage(message: unknown): void;
  close(): void;
  onmessage: ((ev: { data: unknown }) => void) | null;
}
export type ChannelConstructor = new (name: string) => ChannelLike;

export interface ClientOptions {
  /** WebSocket URL of the daemon, e.g. ws://localhost:8080/ */
  url: string;
  /** URL of the /alerts handler, e.g. https://app.example.com/api/alerts. Without it: no list, no polling. */
  pollUrl?: string;
  /** A session token, or a function returning a fresh one (called on every connect and before expiry). */
  token?: string;
  getToken?: () => string | Promise<string>;
  /** Poll interval while the socket is down (default 60 s). */
  pollIntervalMs?: number;
  /** Reconnect backoff: full jitter over base·2^attempt, capped (defaults 500 ms, 30 s); reset after `stableMs` live (10 s). */
  backoff?: { baseMs?: number; capMs?: number; stableMs?: number };
  /** How many alerts to load with the list (default 50). */
  limit?: number;
  /** Only these alert types (default: all). */
  types?: string[];
  /** Log what happens to the console. */
  debug?: boolean;
  /** Defaults to globalThis.WebSocket. */
  WebSocket?: SocketConstructor;
  /**
   * The daemon's event stream, e.g. http://localhost:8080/alerts/stream. With it and transport
   * 'auto' (the default), the client streams over Server-Sent Events once the WebSocket has
   * failed to connect; with 'sse', always. Marking read then goes over `pollUrl`.
   */
  streamUrl?: string;
  transport?: 'auto' | 'websocket' | 'sse';
  /** Defaults to globalThis.EventSource. */
  EventSource?: EventSourceConstructor;
  /** Defaults to globalThis.fetch. */
  fetch?: typeof fetch;
  /** Defaults to console.log. */
  logger?: (...args: unknown[]) => void;
  /** Re-authenticate with a fresh token this long before the current one expires (default 60 s). */
  refreshLeadMs?: number;
  /**
   * How long a new socket or stream may go without a message from the server before `synced`
   * (default 30 s): past it, it is closed and the client reconnects with backoff (polling
   * meanwhile). A node that cannot serve it (its Redis away) would otherwise hold it silent.
   * Each message restarts the wait, so a long replay is not cut.
   */
  syncTimeoutMs?: number;
  /**
   * One connection for all the tabs of this browser that use the same daemon `url` for the same
   * user (default true): one tab (the leader, elected with Web Locks) holds it and passes every
   * change to the others over BroadcastChannel; their actions go to it. Without either API the
   * client holds a socket per tab, as with `false`.
   */
  shareTabs?: boolean;
  /** Defaults to globalThis.navigator.locks. */
  locks?: LocksLike;
  /** Defaults to globalThis.BroadcastChannel. */
  BroadcastChannel?: ChannelConstructor;
  /**
   * While live, the client sends a `ping` this often and expects an answer within
   * `pongTimeoutMs` (default 25 s and 5 s); without one, it drops the socket and reconnects at
   * once. A tick that comes far later than due (the device slept) checks the socket at once.
   */
  heartbeatMs?: number;
  pongTimeoutMs?: number;
  /** Source of randomness for the jitter (tests). */
  random?: () => number;
}

export type Events = {
  change: [State];
  status: [Status];
  /** An alert this tab has not had before (never twice for one id). */
  notification: [Alert];
  error: [Error];
};
