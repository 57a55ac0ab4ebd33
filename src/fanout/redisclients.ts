/**
 * The node-redis clients the fan-out holds: what pgbell uses of one (single-node or cluster
 * alike), how it reconnects, how it is cut, and the credentials and TLS every node of a cluster
 * gets from the seed URLs. Separate from redis.ts, which decides when clients are built and
 * rebuilt: this is what a client is, whoever builds it.
 */

/** What pgbell uses of a node-redis client, single-node or cluster. */
export interface PubSub {
  connect(): Promise<unknown>;
  sSubscribe(channel: string, listener: (message: string) => void): Promise<void>;
  sUnsubscribe(channel: string, listener?: (message: string) => void): Promise<unknown>;
  subscribe(channel: string, listener: (message: string) => void): Promise<void>;
  sPublish(channel: string, message: string): Promise<unknown>;
  publish(channel: string, message: string): Promise<unknown>;
  close(): Promise<unknown>;
  destroy(): void;
  on(event: string, listener: (...args: any[]) => void): unknown;
}

/** Drops a client's connections now; one closed already throws, which is fine here. */
export function destroy(c: PubSub): void {
  try {
    c.destroy();
  } catch {
    // closed already
  }
}

export const reconnectStrategy = (retries: number) => Math.min(5000, 50 * 2 ** Math.min(retries, 7));

/**
 * The credentials and TLS of a cluster's seed URLs (the first that names them), for every
 * node's client: a cluster with requirepass answers NOAUTH to a client without them.
 */
export function clusterAccess(urls: readonly string[]): { username?: string; password?: string; tls: boolean } {
  const parsed = urls.map((u) => new URL(u));
  const withCreds = parsed.find((u) => u.password !== '' || u.username !== '');
  const tls = parsed.some((u) => u.protocol === 'rediss:');
  if (tls && parsed.some((u) => u.protocol !== 'rediss:')) throw new Error('REDIS_CLUSTER_NODES mixes redis:// and rediss:// URLs: a cluster is TLS throughout or not at all');
  return {
    ...(withCreds?.username ? { username: decodeURIComponent(withCreds.username) } : {}),
    ...(withCreds?.password ? { password: decodeURIComponent(withCreds.password) } : {}),
    tls,
  };
}
