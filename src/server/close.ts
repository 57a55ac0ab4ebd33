/**
 * How a socket or stream that pgbell closed is ended: cut once its close frame has left, or
 * after a grace period. Its own file: it is the one bound on how long a closed (or refused)
 * socket may linger, outside every connection limit.
 */
import type { Socket } from '../delivery/socket.js';

/** How long a socket pgbell closed may take to send its close frame before it is cut anyway (see endOnceSent). */
const CLOSE_GRACE_MS = 2_000;

/**
 * Cuts a socket pgbell has closed once its close frame (a stream's `close` event) has left for
 * the network, or after CLOSE_GRACE_MS if it cannot leave (the peer reads nothing). Waiting for
 * the peer's answer instead would let one that ignores close frames hold its socket for ws's
 * 30 s close wait, and a stream that is not read for as long as its connection lives: outside
 * every limit, as a refused socket at the connection limit is not counted in any.
 */
export function endOnceSent(ws: Socket): void {
  const deadline = performance.now() + CLOSE_GRACE_MS;
  const check = (): void => {
    if (ws.readyState === 3) return;
    if (ws.bufferedAmount === 0 || performance.now() >= deadline) ws.terminate();
    else setTimeout(check, 20).unref();
  };
  // After this turn: writes the kernel took at once are counted as sent only then.
  setImmediate(check);
}
