/**
 * Redis fan-out (PGBELL_FANOUT=redis): one relay LISTENs and publishes each transaction's
 * changes per user; every node subscribes only for the users whose sockets it holds. Sharded
 * pub/sub (SPUBLISH/SSUBSCRIBE) spreads users over a Redis cluster's shards.
 *
 * Pub/sub is at-most-once: a node that loses Redis catches its sockets up from their cursors
 * (the same catch-up as after a listener gap), so nothing is lost either way.
 */
import { createClient, type RedisClientType } from 'redis';
import type { Change, ChangeBatch } from '../db/changes.js';
import type { Logger } from '../log.js';
import type { WireAlert } from '../protocol.js';

/** One transaction's changes for one user, as published. bigints travel as strings. */
interface Wire {
  txid: string;
  xmin: string | null;
  changes: Array<{ kind: 'alert'; alert: WireAlert; txid: string; insertTxid: string; seq: string } | { kind: 'delete'; id: string; userId: string; txid: string }>;
  unread: Record<string, number>;
}

export interface FanoutOptions {
  url: string;
  /** The NOTIFY channel name: part of the channels' namespace. */
  channel: string;
  /**
   * The database's id (pgbell_state): the rest of the namespace, so that deployments sharing a
   * Redis (and a channel name, and user ids) never see each other's messages.
   */
  databaseId: string;
  log: Logger;
  /** A transaction's changes for a user this node holds. */
  onChanges: (txid: string, xmin: bigint | null, batch: ChangeBatch) => void;
  /** A revocation (sent to every node). */
  onRevoke: (userId: string, before: number) => void;
  /** The subscriber connection was lost and is back: messages in between are gone. */
  onResumed: () => void;
}

export class RedisFanout {
  readonly #pub: RedisClientType;
  readonly #sub: RedisClientType;
  /** Users watched: how many sockets, and the SSUBSCRIBE every one of them awaits. */
  readonly #watched = new Map<string, { n: number; subscribed: Promise<void> }>();
  readonly #o: FanoutOptions;
  #connectedOnce = false;
  #lost = false;

  constructor(opts: FanoutOptions) {
    this.#o = opts;
    const reconnectStrategy = (retries: number) => Math.min(5000, 50 * 2 ** Math.min(retries, 7));
    this.#pub = createClient({ url: opts.url, socket: { reconnectStrategy } }) as RedisClientType;
    this.#sub = this.#pub.duplicate() as RedisClientType;
    for (const c of [this.#pub, this.#sub]) c.on('error', (err: Error) => opts.log.warn({ err: err.message }, 'redis connection error'));
    this.#sub.on('end', () => (this.#lost = true));
    this.#sub.on('reconnecting', () => {
      if (!this.#lost) opts.log.warn('redis subscriber connection lost; reconnecting');
      this.#lost = true;
    });
    this.#sub.on('ready', () => {
      if (this.#connectedOnce && this.#lost) {
        opts.log.info('redis subscriber reconnected; catching up');
        // node-redis restores the subscriptions as part of reconnecting; give it a turn. Until
        // the catch-up is queued, messages do not move cursors' horizons (some were lost).
        setTimeout(() => {
          this.#lost = false;
          opts.onResumed();
        }, 100);
      }
      this.#connectedOnce = true;
    });
  }

  get ready(): boolean {
    return this.#sub.isReady && this.#pub.isReady;
  }

  async start(): Promise<void> {
    await Promise.all([this.#pub.connect(), this.#sub.connect()]);
    await this.#sub.subscribe(this.#revokeChannel(), (message) => {
      try {
        const { userId, before } = JSON.parse(message) as { userId: string; before: number };
        this.#o.onRevoke(userId, before);
      } catch {
        this.#o.log.warn({ message: message.slice(0, 200) }, 'dropped a malformed revocation message');
      }
    });
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
    const subscribed = this.#sub.sSubscribe(this.#userChannel(userId), (message) => this.#onMessage(message));
    const fresh = { n: 1, subscribed };
    this.#watched.set(userId, fresh);
    // A failed subscription is not kept: the next socket of the user tries again.
    subscribed.catch(() => {
      if (this.#watched.get(userId) === fresh) this.#watched.delete(userId);
    });
    return subscribed;
  }

  unwatch(userId: string): void {
    const entry = this.#watched.get(userId);
    if (!entry) return;
    if (--entry.n > 0) return;
    this.#watched.delete(userId);
    void entry.subscribed.then(() => this.#sub.sUnsubscribe(this.#userChannel(userId))).catch(() => {});
  }

  /** Publishes a batch's changes, one message per user and transaction. */
  async publish(batch: ChangeBatch, xminOf: (txid: bigint) => bigint | null): Promise<void> {
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
        txid,
        xmin: xmin === null ? null : xmin.toString(),
        changes: changes.map((c) =>
          c.kind === 'alert'
            ? { kind: 'alert' as const, alert: c.alert, txid: c.txid.toString(), insertTxid: c.insertTxid.toString(), seq: c.seq.toString() }
            : { kind: 'delete' as const, id: c.id, userId: c.userId, txid: c.txid.toString() },
        ),
        unread: batch.unread.get(userId) ?? {},
      };
      sends.push(this.#pub.sPublish(this.#userChannel(userId), JSON.stringify(wire)));
    }
    await Promise.all(sends);
  }

  async publishRevocation(userId: string, before: number): Promise<void> {
    await this.#pub.publish(this.#revokeChannel(), JSON.stringify({ userId, before }));
  }

  async close(): Promise<void> {
    await Promise.all([this.#sub.quit().catch(() => {}), this.#pub.quit().catch(() => {})]);
  }

  #onMessage(message: string): void {
    let wire: Wire;
    try {
      wire = JSON.parse(message) as Wire;
    } catch {
      this.#o.log.warn({ message: message.slice(0, 200) }, 'dropped a malformed fan-out message');
      return;
    }
    const changes: Change[] = wire.changes.map((c) =>
      c.kind === 'alert'
        ? { kind: 'alert', alert: c.alert, txid: BigInt(c.txid), insertTxid: BigInt(c.insertTxid), seq: BigInt(c.seq) }
        : { kind: 'delete', id: c.id, userId: c.userId, txid: BigInt(c.txid) },
    );
    const userId = changes[0] ? (changes[0].kind === 'alert' ? changes[0].alert.userId : changes[0].userId) : '';
    this.#o.onChanges(wire.txid, wire.xmin === null || this.#lost ? null : BigInt(wire.xmin), { changes, unread: new Map([[userId, wire.unread]]) });
  }

  #userChannel(userId: string): string {
    return `pgbell:${this.#o.databaseId}:${this.#o.channel}:u:${userId}`;
  }

  #revokeChannel(): string {
    return `pgbell:${this.#o.databaseId}:${this.#o.channel}:revoke`;
  }
}
