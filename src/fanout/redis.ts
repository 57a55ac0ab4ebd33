/**
 * Redis fan-out (PGBELL_FANOUT=redis): one relay LISTENs and publishes each transaction's
 * changes per user; every node subscribes only for the users whose sockets it holds. Sharded
 * pub/sub (SPUBLISH/SSUBSCRIBE) puts each user's channel on the master that owns its hash slot,
 * so a Redis Cluster (REDIS_CLUSTER_NODES) spreads users over its masters.
 *
 * Pub/sub is at-most-once: a node that loses Redis catches its sockets up from their cursors
 * (the same catch-up as after a listener gap), so nothing is lost either way. In a cluster, a
 * node lost (a master killed, say) makes this node build its clients anew from the cluster's
 * current topology, once a replica has taken over: subscribe again for every user it holds,
 * then catch up. A slot moved (resharding) does the same: see #hookMoves.
 *
 * A socket's SSUBSCRIBE that does not settle within subscribeTimeoutMs (its client was rebuilt
 * under it, or the slot's master is down) fails its socket, which the daemon closes with 1013;
 * and a node that has not reached Redis for unreachableMs says so (onUnreachable), so that its
 * sockets go elsewhere rather than wait, silent, for messages that cannot come.
 */
import { createClient, createCluster, type RedisClusterType } from 'redis';
import type { Change, ChangeBatch } from '../db/changes.js';
import type { Logger } from '../log.js';
import { clusterAccess, destroy, reconnectStrategy, type PubSub } from './redisclients.js';
import { SUBSCRIBE_TIMEOUT_MS, unanswered, UNREACHABLE_MS } from './redistimeouts.js';
import { changesFromWire, changesToWire, countsFromWire, countsToWire, type Wire } from './rediswire.js';

export interface FanoutOptions {
  /** One Redis. */
  url?: string | undefined;
  /** A Redis Cluster: some of its nodes (redis:// URLs); the rest are discovered. */
  clusterNodes?: string[] | undefined;
  /** The NOTIFY channel name: part of the channels' namespace. */
  channel: string;
  /**
   * The database's id (pgbell_state): the rest of the namespace, so that deployments sharing a
   * Redis (and a channel name, and user ids) never see each other's messages.
   */
  databaseId: string;
  log: Logger;
  /** A transaction's changes for a user this node holds. */
  onChanges: (txid: string, xmin: bigint | null, batch: ChangeBatch, epoch: string | undefined) => void;
  /** A revocation (sent to every node). */
  onRevoke: (userId: string, before: number) => void;
  /** The subscriber connection was lost and is back: messages in between are gone. */
  onResumed: () => void;
  /** Redis has been unreachable for unreachableMs (called again each second while it stays so). */
  onUnreachable?: (forMs: number) => void;
  /** Default SUBSCRIBE_TIMEOUT_MS (tests use less). */
  subscribeTimeoutMs?: number | undefined;
  /** Default UNREACHABLE_MS (tests use less). */
  unreachableMs?: number | undefined;
}

export class RedisFanout {
  #pub: PubSub;
  #sub: PubSub;
  /** Users watched: how many sockets, and the SSUBSCRIBE every one of them awaits. */
  readonly #watched = new Map<string, { n: number; subscribed: Promise<void> }>();
  readonly #o: FanoutOptions;
  readonly #cluster: boolean;
  /** Cluster mode: nodes seen in the topology (host:port), tried before the seeds on a rebuild. */
  #knownNodes: string[] = [];
  #connectedOnce = false;
  #lost = false;
  /** When Redis was lost (performance.now()), null while it is reached. */
  #lostSince: number | null = null;
  #unreachableTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** Cluster mode: the clients being built anew after a node was lost; null when not. */
  #rebuilding: Promise<void> | null = null;
  /** Cluster mode: nodes lost and slots moved so far. */
  #losses = 0;
  /** Cluster mode: the sharded subscriber connections told of slot moves already. */
  readonly #hooked = new WeakSet<object>();
  /** One listener for every user channel: subscribing a channel twice then adds nothing. */
  readonly #onUserMessage = (message: string) => this.#onMessage(message);
  readonly #onRevokeMessage = (message: string) => {
    try {
      const { userId, before } = JSON.parse(message) as { userId: string; before: number };
      this.#o.onRevoke(userId, before);
    } catch {
      this.#o.log.warn({ message: message.slice(0, 200) }, 'dropped a malformed revocation message');
    }
  };

  constructor(opts: FanoutOptions) {
    this.#o = opts;
    this.#cluster = opts.clusterNodes !== undefined && opts.clusterNodes.length > 0;
    [this.#pub, this.#sub] = this.#clients();
  }

  #clients(): [PubSub, PubSub] {
    const { log } = this.#o;
    if (this.#cluster) {
      const seeds = this.#o.clusterNodes!;
      const { username, password, tls } = clusterAccess(seeds);
      const scheme = tls ? 'rediss' : 'redis';
      // Every node known from the last topology, then the seeds: a seed list naming only a
      // master that died would otherwise leave nothing to rebuild from.
      const rootNodes = [...new Set([...this.#knownNodes.map((a) => `${scheme}://${a}`), ...seeds])].map((url) => ({ url }));
      // The seeds' credentials and TLS reach every node, discovered ones too (node-redis
      // gives discovered nodes `defaults` only).
      const pub = createCluster({
        rootNodes,
        defaults: { ...(username ? { username } : {}), ...(password ? { password } : {}), socket: { reconnectStrategy, ...(tls ? { tls: true as const } : {}) } },
      }) as unknown as PubSub & { duplicate(): PubSub };
      const sub = pub.duplicate();
      for (const c of [pub, sub]) {
        c.on('error', (err: Error) => log.warn({ err: err.message }, 'redis cluster error'));
        c.on('node-error', (err: Error, node: { host?: string; port?: number }) => {
          log.warn({ err: err.message, node: `${node?.host}:${node?.port}` }, 'redis cluster node error');
          if (c === this.#pub || c === this.#sub) this.#nodeLost();
        });
        c.on('node-reconnecting', () => {
          if (c === this.#pub || c === this.#sub) this.#nodeLost();
        });
      }
      return [pub, sub];
    }
    const pub = createClient({ url: this.#o.url, socket: { reconnectStrategy } });
    const sub = pub.duplicate();
    for (const c of [pub, sub]) c.on('error', (err: Error) => log.warn({ err: err.message }, 'redis connection error'));
    sub.on('end', () => this.#setLost(true));
    sub.on('reconnecting', () => {
      if (!this.#lost) log.warn('redis subscriber connection lost; reconnecting');
      this.#setLost(true);
    });
    sub.on('ready', () => {
      if (this.#connectedOnce && this.#lost) {
        log.info('redis subscriber reconnected; catching up');
        // node-redis restores the subscriptions as part of reconnecting; give it a turn. Until
        // the catch-up is queued, messages do not move cursors' horizons (some were lost).
        setTimeout(() => {
          this.#setLost(false);
          this.#o.onResumed();
        }, 100);
      }
      this.#connectedOnce = true;
    });
    this.#single = { pub, sub };
    return [pub as unknown as PubSub, sub as unknown as PubSub];
  }

  /** Single-node mode's clients, for their readiness. */
  #single: { pub: { isReady: boolean }; sub: { isReady: boolean } } | null = null;

  get ready(): boolean {
    if (this.#single) return this.#single.sub.isReady && this.#single.pub.isReady;
    return this.#connectedOnce && this.#rebuilding === null;
  }

  /**
   * Cluster mode: a node was lost (a master killed, a network cut). node-redis keeps
   * reconnecting to its address and does not move the sharded subscriptions it held, so build
   * the clients anew from the cluster's topology once it has recovered, subscribe for every user
   * again, and catch up from cursors what was published meanwhile.
   */
  #nodeLost(why = 'a redis cluster node was lost'): void {
    if (!this.#connectedOnce || this.#closed) return;
    this.#setLost(true);
    // Counted even while rebuilding: a loss during a rebuild makes it build again.
    this.#losses++;
    if (this.#rebuilding) return;
    this.#o.log.warn(`${why}; reconnecting to the cluster`);
    this.#rebuilding = this.#rebuild().finally(() => (this.#rebuilding = null));
  }

  async #rebuild(): Promise<void> {
    this.#rememberTopology();
    for (let attempt = 0; !this.#closed; attempt++) {
      await new Promise((r) => setTimeout(r, Math.min(2000, 200 * 2 ** attempt)));
      if (this.#closed) return;
      const losses = this.#losses;
      const [pub, sub] = this.#clients();
      try {
        // Until a replica has taken over the lost master's slots, connecting fails, or waits on
        // the lost master for ever (node-redis keeps reconnecting to it): bounded.
        await Promise.race([
          Promise.all([pub.connect(), sub.connect()]),
          new Promise((_, reject) => setTimeout(() => reject(new Error('connecting took more than 3 s')), 3000).unref()),
        ]);
        await sub.subscribe(this.#revokeChannel(), this.#onRevokeMessage);
        const old = [this.#pub, this.#sub];
        [this.#pub, this.#sub] = [pub, sub];
        // Users watched meanwhile are in the map too (a Map's iterator sees them).
        for (const userId of this.#watched.keys()) await this.#sSubscribe(sub, userId);
        for (const c of old) destroy(c);
      } catch (err) {
        this.#o.log.warn({ err: (err as Error).message, attempt }, 'reconnecting to the redis cluster failed; retrying');
        for (const c of [pub, sub]) if (c !== this.#pub && c !== this.#sub) destroy(c);
        continue;
      }
      // Another node lost or slot moved while subscribing: a catch-up now could come before
      // node-redis has subscribed that channel again.
      if (this.#losses !== losses) continue;
      this.#setLost(false);
      this.#o.log.info('reconnected to the redis cluster; catching up');
      this.#o.onResumed();
      return;
    }
  }

  async start(): Promise<void> {
    await Promise.all([this.#pub.connect(), this.#sub.connect()]);
    await this.#sub.subscribe(this.#revokeChannel(), this.#onRevokeMessage);
    if (this.#cluster) this.#connectedOnce = true;
    const every = Math.min(1000, Math.max(50, Math.floor(this.#unreachableMs / 4)));
    this.#unreachableTimer = setInterval(() => this.#checkReach(), every);
    this.#unreachableTimer.unref();
  }

  get #unreachableMs(): number {
    return this.#o.unreachableMs ?? UNREACHABLE_MS;
  }

  #setLost(lost: boolean): void {
    this.#lost = lost;
    if (!lost) this.#lostSince = null;
    else this.#lostSince ??= performance.now();
  }

  /** Past unreachableMs without Redis: the daemon sends its sockets elsewhere. */
  #checkReach(): void {
    if (this.#lostSince === null || this.#closed) return;
    const forMs = performance.now() - this.#lostSince;
    if (forMs >= this.#unreachableMs) this.#o.onUnreachable?.(forMs);
  }

  /** Cluster mode: the addresses (host:port) of every node the current clients know of. */
  #rememberTopology(): void {
    const known = new Set(this.#knownNodes);
    for (const c of [this.#pub, this.#sub] as unknown as RedisClusterType[]) {
      for (const n of [...(c.masters ?? []), ...(c.replicas ?? [])] as Array<{ host?: string; port?: number }>) {
        if (n.host && n.port) known.add(n.host.includes(':') ? `[${n.host}]:${n.port}` : `${n.host}:${n.port}`);
      }
    }
    this.#knownNodes = [...known];
  }

  /**
   * Subscribes for a user (counted); resolves once Redis confirmed, so nothing published after
   * is missed. A second socket of the user waits for the same confirmation (two tabs
   * reconnecting together must not go live before it).
   */
  async watch(userId: string): Promise<void> {
    const entry = this.#watched.get(userId);
    if (entry) {
      entry.n++;
      return entry.subscribed;
    }
    // While the cluster clients are being rebuilt, the rebuild subscribes for this user too.
    const issued = this.#rebuilding ? this.#rebuilding.then(() => this.#sSubscribe(this.#sub, userId)) : this.#sSubscribe(this.#sub, userId);
    // Bounded: a SSUBSCRIBE on a client the rebuild destroyed, or to a master that is down,
    // may never settle, and its sockets would wait for ever, neither live nor closed.
    const ms = this.#o.subscribeTimeoutMs ?? SUBSCRIBE_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const subscribed = Promise.race([
      issued,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          timedOut = true;
          reject(new Error(`SSUBSCRIBE for user ${userId} did not settle within ${ms} ms`));
        }, ms);
      }),
    ]).finally(() => clearTimeout(timer));
    // Settling after the timeout (queued while Redis was away): not watched any more, nothing
    // should keep the channel subscribed.
    issued.then(
      () => {
        if (timedOut && !this.#watched.has(userId)) void this.#unsubscribe(userId).catch(() => {});
      },
      () => {},
    );
    const fresh = { n: 1, subscribed };
    this.#watched.set(userId, fresh);
    // A failed subscription is not kept: the next socket of the user tries again.
    subscribed.catch(() => {
      if (this.#watched.get(userId) === fresh) this.#watched.delete(userId);
    });
    return subscribed;
  }

  #sSubscribe(sub: PubSub, userId: string): Promise<void> {
    const subscribed = sub.sSubscribe(this.#userChannel(userId), this.#onUserMessage);
    // The call has picked (or made) the connection to the channel's master already.
    if (this.#cluster) this.#hookMoves(sub);
    return subscribed;
  }

  /**
   * Cluster mode: a slot that moves to another master (resharding) takes its sharded channels
   * with it. The old master sends SUNSUBSCRIBE for each, and the connection drops the channel's
   * listeners and emits 'sharded-channel-moved'. node-redis 5's cluster client listens for
   * another event name and never subscribes again (node-redis issue #3311), and a client that
   * does would still lose what was published to the new master in between, with the next
   * message's horizon past the lost ones. So a moved channel counts as a lost node: from the
   * SUNSUBSCRIBE on, no message moves a horizon; the clients are built anew from the cluster's
   * topology, every user is subscribed again, and sockets catch up from their cursors.
   */
  #hookMoves(sub: PubSub): void {
    for (const master of (sub as unknown as RedisClusterType).masters) {
      const conn = master.pubSub?.client;
      if (!conn || this.#hooked.has(conn)) continue;
      this.#hooked.add(conn);
      conn.on('sharded-channel-moved', (channel: string) => {
        if (sub !== this.#sub || this.#closed) return;
        this.#nodeLost(`a redis cluster slot moved to another master (channel ${channel})`);
      });
    }
  }

  unwatch(userId: string): void {
    const entry = this.#watched.get(userId);
    if (!entry) return;
    if (--entry.n > 0) return;
    this.#watched.delete(userId);
    void entry.subscribed.then(() => this.#unsubscribe(userId)).catch(() => {});
  }

  /**
   * SUNSUBSCRIBE of a user's channel, naming its listener: node-redis then marks the channel as
   * unsubscribing until Redis answers, and a watch() meanwhile sends SSUBSCRIBE again. Without
   * the listener it kept the channel as subscribed until the answer, then dropped every
   * listener: a socket of the same user that subscribed in between (a reload within Redis's
   * round trip, or while Redis was away and the command queued) went live on a channel no
   * longer subscribed, and got nothing.
   */
  #unsubscribe(userId: string): Promise<unknown> {
    return this.#sub.sUnsubscribe(this.#userChannel(userId), this.#onUserMessage);
  }

  /** Publishes a batch's changes, one message per user and transaction. */
  async publish(batch: ChangeBatch, xminOf: (txid: bigint) => bigint | null, epoch: string): Promise<void> {
    const groups = new Map<string, Change[]>();
    for (const c of batch.changes) {
      const key = `${c.kind === 'alert' ? c.alert.userId : c.userId}\u0000${c.txid}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = []));
      g.push(c);
    }
    const sends: Promise<unknown>[] = [];
    for (const [key, changes] of groups) {
      const [userId, txid] = key.split('\u0000') as [string, string];
      const xmin = xminOf(BigInt(txid));
      const wire: Wire = {
        ...(epoch ? { epoch } : {}),
        txid,
        xmin: xmin === null ? null : xmin.toString(),
        ...changesToWire(changes),
        ...countsToWire(batch.unread.get(userId)),
      };
      sends.push(this.#pub.sPublish(this.#userChannel(userId), JSON.stringify(wire)));
    }
    await unanswered(Promise.all(sends), 'publishing to Redis');
  }

  async publishRevocation(userId: string, before: number): Promise<void> {
    await unanswered(this.#pub.publish(this.#revokeChannel(), JSON.stringify({ userId, before })), 'publishing a revocation to Redis');
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#unreachableTimer);
    await this.#rebuilding;
    // A graceful close waits for every connection, and a cluster's may include one that keeps
    // reconnecting to a lost node: bounded, then cut.
    const closed = Promise.all([this.#sub.close().catch(() => {}), this.#pub.close().catch(() => {})]);
    await Promise.race([closed, new Promise((r) => setTimeout(r, 2000).unref())]);
    for (const c of [this.#sub, this.#pub]) destroy(c);
  }

  #onMessage(message: string): void {
    let wire: Wire;
    try {
      wire = JSON.parse(message) as Wire;
    } catch {
      this.#o.log.warn({ message: message.slice(0, 200) }, 'dropped a malformed fan-out message');
      return;
    }
    const changes: Change[] = changesFromWire(wire);
    const userId = changes[0] ? (changes[0].kind === 'alert' ? changes[0].alert.userId : changes[0].userId) : '';
    this.#o.onChanges(wire.txid, wire.xmin === null || this.#lost ? null : BigInt(wire.xmin), { changes, unread: new Map([[userId, countsFromWire(wire)]]) }, typeof wire.epoch === 'string' ? wire.epoch : undefined);
  }

  #userChannel(userId: string): string {
    return `pgbell:${this.#o.databaseId}:${this.#o.channel}:u:${userId}`;
  }

  #revokeChannel(): string {
    return `pgbell:${this.#o.databaseId}:${this.#o.channel}:revoke`;
  }
}
