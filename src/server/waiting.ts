/**
 * Handshakes that wait for a place: when MAX_UNAUTHENTICATED sockets are already connecting, a
 * new one is not refused (1013) but held before its upgrade, in arrival order, until one of
 * them authenticates or goes. A refused client backs off (exponentially, in pgbell/client), and
 * in a reconnect storm after a restart those backoffs, not the daemon, set how long the storm
 * lasts; a held handshake costs the daemon a socket and a parsed request, no WebSocket.
 *
 * The room is bounded (its handshakes count toward MAX_CONNECTIONS, and from one client
 * address at most MAX_UNAUTHENTICATED_PER_ADDRESS wait) and so is the wait: past either, the
 * socket is refused with 1013 as before, so the cap still protects the daemon. So are the bytes
 * its handshakes hold (MAX_WAITING_BYTES: their headers and what they sent early): a count alone
 * let one client behind a proxy park 64 KiB in each of MAX_CONNECTIONS handshakes (1.3 GB).
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { Deadlines, type Timed } from './deadlines.js';

export interface Waiter extends Timed {
  req: http.IncomingMessage;
  socket: Duplex;
  head: Buffer;
  /** The address its per-address budget counts under, or null (see budgetAddress in address.ts). */
  address: string | null;
  /** Left the room (admitted, timed out, or its socket closed). */
  gone: boolean;
  /** What the client sent while it waited (it should send nothing before the 101): handed on with `head`. */
  early: Buffer[];
  /** What it holds in the room's byte budget: its request's headers, `head` and `early`. */
  bytes: number;
  onData: (chunk: Buffer) => void;
  /** The listeners the room put on the socket, taken off when it leaves. */
  onEnd: () => void;
  onClose: () => void;
}

const ignore = () => {};

/** What a waiting client may send before its upgrade; more, and it is cut. */
const MAX_EARLY_BYTES = 64 * 1024;

export class WaitingRoom {
  readonly #queue: Waiter[] = [];
  /** Index of the first waiter in #queue still to be looked at (a FIFO without shifting). */
  #head = 0;
  #size = 0;
  /** The waiters' `bytes`, together. */
  #bytes = 0;
  readonly #byAddress = new Map<string, number>();
  readonly #deadlines: Deadlines<Waiter>;

  constructor(
    private readonly limits: { size: number; perAddress: number; waitMs: number; bytes: number },
    /** A waiter's time is up (or the room is being emptied): refuse it. */
    onExpired: (w: Waiter) => void,
  ) {
    this.#deadlines = new Deadlines<Waiter>((w) => {
      if (this.#leave(w)) onExpired(w);
    });
  }

  /** Waiting now. */
  get size(): number {
    return this.#size;
  }

  /** Bytes the waiting handshakes hold (see Waiter.bytes). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Holds a handshake; false if the room (its places, its bytes, or its address's share) is full. */
  enter(req: http.IncomingMessage, socket: Duplex, head: Buffer, address: string | null): boolean {
    if (this.#size >= this.limits.size) return false;
    if (address !== null && this.limits.perAddress > 0 && (this.#byAddress.get(address) ?? 0) >= this.limits.perAddress) return false;
    const bytes = headerBytes(req) + head.length;
    if (this.#bytes + bytes > this.limits.bytes) return false;
    let early = 0;
    const w: Waiter = {
      req,
      socket,
      head,
      address,
      gone: false,
      dueAt: 0,
      slot: -1,
      early: [],
      bytes,
      onData: (chunk) => {
        early += chunk.length;
        // Cut rather than kept: past its own share, or past what the room may hold in all.
        if (early > MAX_EARLY_BYTES || this.#bytes + chunk.length > this.limits.bytes) {
          socket.destroy();
          return;
        }
        w.early.push(chunk);
        w.bytes += chunk.length;
        this.#bytes += chunk.length;
      },
      onEnd: () => socket.destroy(),
      onClose: () => this.#leave(w),
    };
    this.#queue.push(w);
    this.#size++;
    this.#bytes += bytes;
    if (address !== null) this.#byAddress.set(address, (this.#byAddress.get(address) ?? 0) + 1);
    this.#deadlines.set(w, Date.now() + this.limits.waitMs);
    // The socket is read while it waits (the HTTP server left it paused): that is how a client
    // that gives up is seen to go, and it leaves the room.
    socket.on('data', w.onData);
    socket.on('error', ignore);
    socket.on('end', w.onEnd);
    socket.on('close', w.onClose);
    socket.resume();
    return true;
  }

  /** The longest-waiting handshake still open, out of the room; undefined if none. */
  next(): Waiter | undefined {
    while (this.#head < this.#queue.length) {
      const w = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined as unknown as Waiter;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue.splice(0, this.#head);
        this.#head = 0;
      }
      if (this.#leave(w) && !w.socket.destroyed) return w;
    }
    return undefined;
  }

  /** Every waiter, out of the room (shutdown). */
  drain(): Waiter[] {
    const out: Waiter[] = [];
    for (let w = this.next(); w; w = this.next()) out.push(w);
    this.#deadlines.clear();
    return out;
  }

  /**
   * Takes `w` out; false if it had left already. What its client sent is kept in `head`. The
   * socket is not paused again: the upgrade that follows in the same turn attaches its own
   * reader, and a socket paused explicitly would not start flowing for it.
   */
  #leave(w: Waiter): boolean {
    if (w.gone) return false;
    w.gone = true;
    w.socket.removeListener('data', w.onData);
    w.socket.removeListener('end', w.onEnd);
    w.socket.removeListener('close', w.onClose);
    // The upgrade puts its own error listener on; a socket that closed has none left to need.
    w.socket.removeListener('error', ignore);
    if (w.socket.destroyed) w.socket.on('error', ignore);
    if (w.early.length > 0) w.head = Buffer.concat([w.head, ...w.early]);
    this.#size--;
    this.#bytes -= w.bytes;
    this.#deadlines.cancel(w);
    if (w.address !== null) {
      const n = (this.#byAddress.get(w.address) ?? 1) - 1;
      if (n > 0) this.#byAddress.set(w.address, n);
      else this.#byAddress.delete(w.address);
    }
    return true;
  }
}

/** What a parsed request's target and headers take, about (their text; Node caps it at 16 KiB). */
function headerBytes(req: http.IncomingMessage): number {
  let n = (req.url ?? '').length;
  for (const h of req.rawHeaders) n += h.length + 2;
  return n;
}
