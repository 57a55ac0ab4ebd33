/**
 * The record the server keeps per socket or stream (Conn). Its own file so that the parts of
 * the server that walk every connection (the heartbeat) share the type without importing the
 * Server.
 */
import type { Session } from '../auth.js';
import type { Subscriber } from '../delivery/hub.js';
import type { Socket } from '../delivery/socket.js';
import type { Timed } from './deadlines.js';

/**
 * What the server keeps per socket or stream. Every field counts: 10,000 idle sockets hold
 * 10,000 of these, so timers live in one shared queue (see Deadlines) and event handlers are
 * shared, not closures per socket.
 */
export interface Conn extends Timed {
  socket: Socket;
  session: Session | null;
  /** What the expiry deadline (dueAt, slot) is for: `token_expiring`, then the 4401 close at `exp` (plus leeway). */
  expiryStage: 'warn' | 'close';
  sub: Subscriber | null;
  alive: boolean;
  /** When the unanswered ping was sent (performance.now()). */
  pingedAt: number;
  authTimer: NodeJS.Timeout | undefined;
  /** An auth message arrived before it authenticated: its verification may still be under way (see judge in server.ts). */
  spoke?: boolean;
  /** The auth deadline was extended once for a frame that arrived in time. */
  extended?: boolean;
  /** Messages of one socket are handled one after another (auth verification is async); null when none is. */
  queue: Promise<void> | null;
  /** Rate limit: messages counted in the window that started at `windowStart`. */
  windowStart: number;
  messages: number;
  limited: boolean;
  /** Counted in the per-address unauthenticated budget under this address, until it authenticates or closes. */
  pendingAddress?: string | undefined;
}

export function newConn(socket: Socket): Conn {
  return { socket, session: null, dueAt: 0, slot: -1, expiryStage: 'warn', sub: null, alive: true, pingedAt: 0, authTimer: undefined, queue: null, windowStart: Date.now(), messages: 0, limited: false };
}
