/**
 * The heartbeat: every socket and stream is pinged once per interval, the pings spread over
 * small ticks, and one whose ping went unanswered for a whole interval is terminated. Its own
 * file: it only walks the server's connections, with a timer and a position of its own.
 */
import type { Socket } from '../delivery/socket.js';
import type { Conn } from './conn.js';
import type { ServerOptions } from './options.js';
import { SseSocket } from './sse.js';

/**
 * A heartbeat pass is spread over ticks this far apart at most (at least 20 per interval; see
 * #beat). 500 pings in one turn (10,000 sockets in 20 slices) held the event loop 12–20 ms
 * every 1.5 s, and every delivery waiting behind them; 50 ms ticks make that 17 pings, under 1 ms.
 */
const HEARTBEAT_TICK_MS = 50;

export class Heartbeat {
  /** The server's connections (the same Map: sockets come and go while a pass is under way). */
  readonly #conns: Map<Socket, Conn>;
  readonly #opts: Pick<ServerOptions, 'heartbeatMs' | 'log'>;
  #timer: NodeJS.Timeout | undefined;
  /** Where the current heartbeat pass over the sockets has got to. */
  #pass: Iterator<[Socket, Conn]> | null = null;
  #passStarted = 0;
  /** Heartbeat tick (see HEARTBEAT_TICK_MS); set by start(). */
  #tickMs = HEARTBEAT_TICK_MS;

  constructor(conns: Map<Socket, Conn>, opts: Pick<ServerOptions, 'heartbeatMs' | 'log'>) {
    this.#conns = conns;
    this.#opts = opts;
  }

  /** Starts the ticks (the server's listen()). */
  start(): void {
    this.#tickMs = Math.max(5, Math.min(HEARTBEAT_TICK_MS, Math.floor(this.#opts.heartbeatMs / 20)));
    this.#timer = setInterval(() => this.#beat(), this.#tickMs);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /**
   * One slice of a heartbeat pass: pings the sockets' share of one tick of the interval, so
   * that 20,000 pings (and their pongs) are spread over it instead of stalling deliveries. A socket whose ping has gone unanswered for a whole interval is gone.
   */
  #beat(): void {
    const now = performance.now();
    if (this.#pass === null) {
      // A pass takes at least the interval, however many sockets left meanwhile.
      if (now - this.#passStarted < this.#opts.heartbeatMs) return;
      this.#pass = this.#conns.entries();
      this.#passStarted = now;
    }
    for (let n = Math.ceil((this.#conns.size * this.#tickMs) / this.#opts.heartbeatMs); n > 0; n--) {
      const next = this.#pass.next();
      if (next.done) {
        this.#pass = null;
        return;
      }
      const [ws, conn] = next.value;
      if (!conn.alive) {
        if (now - conn.pingedAt < this.#opts.heartbeatMs) continue;
        this.#opts.log.info({ userId: conn.session?.userId }, ws instanceof SseSocket ? 'terminated an event stream whose heartbeat did not leave (the peer reads nothing)' : 'terminated a WebSocket that missed its pong');
        ws.terminate();
        continue;
      }
      conn.alive = false;
      conn.pingedAt = now;
      ws.ping();
    }
  }
}
