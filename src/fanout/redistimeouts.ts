/**
 * How long the fan-out waits on Redis before it gives up: a publish, a socket's subscription, a
 * node without Redis. Each bounds a wait that could otherwise last for ever (a master down, a
 * Redis that stopped answering); separate from redis.ts so that the bounds read in one place.
 */

/**
 * How long a publish may go unanswered before it fails (and the relay tries again): one to a
 * master that is down, or to a Redis that stopped answering, may never settle, and it held the
 * relay's chain, and so the daemon's shutdown, for ever.
 */
export const PUBLISH_TIMEOUT_MS = 5_000;

/** How long a socket waits for its user's SSUBSCRIBE before it is refused (1013). */
export const SUBSCRIBE_TIMEOUT_MS = 10_000;
/**
 * How long a node may be without Redis before it closes its sockets (1013): longer than a
 * cluster's failover (cluster-node-timeout, 15 s by default, and the election after it).
 */
export const UNREACHABLE_MS = 30_000;

/** `p`, or a rejection once it has gone PUBLISH_TIMEOUT_MS without an answer. */
export function unanswered<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${PUBLISH_TIMEOUT_MS} ms`)), PUBLISH_TIMEOUT_MS);
  });
  // Its own failure, after the timeout, is no one's to handle.
  p.catch(() => {});
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
