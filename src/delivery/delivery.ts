/**
 * Turns committed transactions into messages on sockets, without losing or repeating any.
 *
 * Live work runs as steps on one chain, one at a time, so each socket sees changes in commit order:
 *   live      the transactions whose notifications arrived in one event-loop turn: one read,
 *             then each change goes to the live subscribers of its user that have not seen it;
 *   catch-up  after the listener reconnects, every live subscriber: one read per batch of users
 *             from their cursors, then the changes each has not seen; later live steps wait.
 * Subscribers that just authenticated sync off the chain, so a reconnect storm's reads never
 * hold up live delivery. While a subscriber's sync read runs, live steps stash its user's changes
 * on it; once the read is back it gets the read's changes, then the stashed ones it lacks (its
 * cursor says which it has), and is live. Whatever a live step handled before the read began
 * committed before the read's snapshot, so the read has it.
 *
 * A failed read (database restarting) is retried with capped backoff for as long as the daemon
 * runs; later steps wait behind it so order holds.
 *
 * This file keeps the order of steps, the reads and the epoch; the rest of delivery/ holds what
 * needs none of that state: outbox.ts (who gets a transaction, and how it is written), replay.ts
 * (what one subscriber is sent once its sync read is back), plan.ts (where a sync reads from),
 * recent.ts (live transactions kept for syncs that missed them), messages.ts (the wire bodies),
 * options.ts (the settings and their defaults).
 *
 * Why one file: what is left is one class whose steps share its private state: the chain, the
 * generation a sync read is checked against, the epoch, the horizon and the sync runners. The
 * live steps, the catch-up and the syncs decide their order by that state together; splitting
 * them would give it a public face, a change of the class rather than a move.
 */
import { changesSince, liveBatch, sawTx, type Change, type ChangeBatch, type Counted, type SinceBatch, type UserFilter } from '../db/changes.js';
import { CloseCode } from '../errors.js';
import type { Subscriber } from './hub.js';
import { userOf } from './messages.js';
import { LIVE_FILTER_MAX_USERS, SYNC_BATCH_USERS, type DeliveryOptions } from './options.js';
import { fanOut, sendAll, type Outbox } from './outbox.js';
import { planSync } from './plan.js';
import { RecentTransactions } from './recent.js';
import { syncOne } from './replay.js';
import { retry } from '../util/retry.js';

// Delivery's settings and defaults stay importable from here, beside it, as before they moved.
export { LIVE_FILTER_MAX_USERS, SYNC_BATCH_USERS, type DeliveryOptions } from './options.js';
export { RECENT_MAX_BYTES } from './recent.js';

/**
 * Sync reads running at once, off the live chain. Two keep a storm moving while leaving the
 * pool's other connections to live reads.
 */
const SYNC_RUNNERS = 2;

/** How long a second sync runner gathers subscribers before its read (see #runSyncs). */
const SYNC_GATHER_MS = 25;

/**
 * An entry of the live stream, in arrival order: a transaction to read (`txid`), or a horizon
 * (`txid` null): every transaction below `xmin` was announced by an earlier entry.
 */
interface LiveTx {
  txid: string | null;
  xmin: bigint | null;
  /** WAL mode: the transaction's changes as the stream carried them, or null (read them); see SourceEvents. */
  carried?: Change[] | null | undefined;
  /** A forwarded source's: `carried` was read for everyone with these counts; nothing is read here. */
  counted?: Counted | undefined;
  /** performance.now() when the notification arrived. */
  at: number;
}

export class Delivery {
  #pendingLive: LiveTx[] = [];
  /** Subscribers waiting for their first sync (or for the rest of a paused replay). */
  #syncQueue: Subscriber[] = [];
  #syncRunners = 0;
  #syncIdle: Array<() => void> = [];
  /** Bumped when the listener (or Redis) comes back: a sync read older than that may miss what was lost. */
  #generation = 0;
  #chain: Promise<void> = Promise.resolve();
  #scheduled = false;
  #stopping = false;
  /**
   * Every transaction below this has been delivered to (or skipped by) every live subscriber:
   * the largest trusted horizon processed so far, from the daemon's own probes (see
   * Listener.probe) or the poller's reads, never from a payload. A horizon covers everything
   * that committed before it was taken, and their notifications came first; after a listener
   * gap, the catch-up step covers what was lost before any later notification is processed.
   */
  #horizon = 0n;
  /** The epoch reads are in now, and those left behind (a read still on one is stale). */
  #epoch: string;
  readonly #pastEpochs = new Set<string>();
  /** A new epoch a relay's message announced, for which a catch-up is queued. */
  #awaitedEpoch = '';
  readonly #o: DeliveryOptions;
  /** Live transactions kept for the sync reads that did not see them (see recent.ts). */
  readonly #recent: RecentTransactions;

  constructor(opts: DeliveryOptions) {
    this.#o = opts;
    this.#epoch = opts.epoch;
    this.#recent = new RecentTransactions(opts);
  }

  get epoch(): string {
    return this.#epoch;
  }

  /**
   * A read came back from a new epoch: the server is a promoted standby (or a restore), which
   * may have lost transactions every socket was sent, and hands their ids out again. Nothing
   * learnt on the old epoch holds: the daemon-wide horizon, the recent live transactions, and
   * every socket's cursor. Live steps skip sockets of the old epoch (see offer in outbox.ts)
   * until the catch-up queued here resets them: `reset`, then a read from now.
   */
  #switchEpoch(epoch: string): void {
    this.#o.log.warn({ from: this.#epoch, to: epoch }, 'the database is on a new timeline (a failover or a restore): resetting every socket');
    this.#pastEpochs.add(this.#epoch);
    this.#epoch = epoch;
    this.#horizon = 0n;
    this.#recent.clear();
    this.catchUp();
  }

  /**
   * A transaction's notification arrived (in commit order). `xmin`, when given, must come from
   * pgbell's own reads (the poller), never from a payload. `counted`: see SourceEvents.
   */
  enqueue(txid: string, xmin: bigint | null = null, carried?: Change[] | null, counted?: Counted): void {
    this.#pendingLive.push({ txid, xmin, carried, counted, at: performance.now() });
    this.#schedule();
  }

  /** Every transaction below `xmin` was enqueued before this call (the daemon's own probe came back). */
  horizon(xmin: bigint): void {
    this.#pendingLive.push({ txid: null, xmin, at: performance.now() });
    this.#schedule();
  }

  /**
   * One transaction's changes, read already (by the relay, in Redis fan-out mode), in commit
   * order like enqueue(): delivered without a read of our own.
   */
  deliverRead(txid: string, xmin: bigint | null, batch: ChangeBatch, epoch?: string): void {
    // The relay reads in a new epoch (a failover) before this node's reads have seen it: a
    // catch-up, queued ahead of this message, reads in it too and resets every socket.
    if (epoch && epoch !== this.#epoch && !this.#pastEpochs.has(epoch) && this.#awaitedEpoch !== epoch) {
      this.#awaitedEpoch = epoch;
      this.catchUp();
    }
    this.#push(async () => {
      if (epoch && epoch !== this.#epoch) {
        // The old server's (a relay not yet failed over), or one this node's reads do not see:
        // what it carries cannot be checked against the cursors here; the catch-up reads it.
        this.#o.log.warn({ epoch, txid }, 'dropped a fan-out message of another epoch than this node reads in');
        return;
      }
      const tx = BigInt(txid);
      const group = batch.changes.filter((c) => c.txid === tx);
      // The horizon holds for this user only: messages of one user arrive in order on one
      // channel, but channels (shards) do not keep order between them.
      const horizon = xmin != null && xmin <= tx ? xmin : 0n;
      const outbox: Outbox = new Map();
      if (group.length > 0) {
        this.#recent.remember(tx, group, batch.unread, horizon);
        fanOut(this.#o, this.#epoch, tx, group, batch.unread, horizon, outbox);
      }
      for (const [sub, frames] of outbox) sendAll(sub, frames);
    });
  }

  /** Bytes of rows the recent-transaction memory holds now, about (a gauge). */
  get recentBytes(): number {
    return this.#recent.bytes;
  }

  /** A socket authenticated: send `ready`, what it missed since its cursor, then `synced`. */
  subscribe(sub: Subscriber): Promise<void> {
    if (this.#stopping) sub.settle();
    else {
      this.#syncQueue.push(sub);
      this.#runSyncs();
    }
    return sub.synced;
  }

  /**
   * Starts sync runners while there are subscribers waiting; each takes everything queued. A
   * runner that starts while another reads (a reconnect storm: sockets arrive one by one) first
   * gathers for SYNC_GATHER_MS, or until a read's worth of users is queued: each read is a
   * statement on the database, and without the wait most would carry a socket or two. A lone
   * socket, with no read running, is read at once.
   */
  #runSyncs(): void {
    while (this.#syncQueue.length > 0 && this.#syncRunners < SYNC_RUNNERS) {
      this.#syncRunners++;
      const gather = this.#syncRunners > 1 && this.#syncQueue.length < (this.#o.syncBatchUsers ?? SYNC_BATCH_USERS);
      if (!gather) {
        this.#startSync();
        continue;
      }
      const started = performance.now();
      const wait = (): void => {
        // Stopping: what is queued is settled by abandon(), not read.
        if (this.#stopping) return this.#syncDone();
        if (this.#syncQueue.length < (this.#o.syncBatchUsers ?? SYNC_BATCH_USERS) && performance.now() - started < SYNC_GATHER_MS) {
          setTimeout(wait, 5);
          return;
        }
        if (this.#syncQueue.length === 0) return this.#syncDone();
        this.#startSync();
      };
      setTimeout(wait, 5);
      return;
    }
  }

  /** One runner (already counted) reads everything queued now. */
  #startSync(): void {
    const subs = this.#syncQueue;
    this.#syncQueue = [];
    void this.#sync(subs, false)
      .catch((err) => this.#o.log.error({ err }, 'syncing subscribers failed'))
      .finally(() => this.#syncDone());
  }

  #syncDone(): void {
    this.#syncRunners--;
    if (this.#syncQueue.length > 0 && !this.#stopping) this.#runSyncs();
    else if (this.#syncRunners === 0) for (const done of this.#syncIdle.splice(0)) done();
  }

  /** Resolves when no sync read is running or queued. */
  #syncsSettled(): Promise<void> {
    if (this.#syncRunners === 0 && this.#syncQueue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#syncIdle.push(resolve));
  }

  /**
   * The listener is LISTENing again after losing its connection: notifications sent meanwhile
   * are gone, so read every live subscriber's changes from its cursor. Queued ahead of any
   * notification that arrived on the new connection.
   */
  catchUp(): void {
    // What the old connection announced goes ahead of the catch-up, as it arrived before it.
    this.#flush();
    this.#generation++;
    this.#o.log.info({ subscribers: this.#o.hub.connections }, 'catching up after the listener reconnected');
    // Who to catch up is decided when the step runs, not now: a subscriber whose first sync
    // finished meanwhile needs it as much as the others. (A first sync whose read began before
    // this call reads again: see #syncAll.)
    this.#pushSync(async () => {
      const subs = [...this.#o.hub.all()].filter((s) => s.live);
      if (subs.length > 0) await this.#sync(subs, true);
    });
  }

  /** Delivers what has arrived so far (notifications already received included), then resolves. */
  async drain(): Promise<void> {
    this.#flush();
    await Promise.all([this.#chain, this.#syncsSettled()]);
  }

  /** Stops: a read that is failing is given up (its sockets are closing anyway). */
  async abandon(): Promise<void> {
    this.#stopping = true;
    await Promise.all([this.#chain, this.#syncsSettled()]);
    for (const sub of this.#syncQueue.splice(0)) sub.settle();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    const live = this.#pendingLive;
    this.#pendingLive = [];
    if (live.length > 0) {
      // Reads of live steps overlap (each on its own pooled connection); their results are
      // still sent in order. Only when no catch-up step is ahead: it decides who is live when it
      // runs, and a read started before that would leave its users out.
      const read = this.#syncsAhead === 0 ? this.#readLive(live) : null;
      this.#push(() => this.#live(live, read));
    }
  }

  #push(step: () => Promise<void>): void {
    this.#chain = this.#chain.then(step).catch((err) => this.#o.log.error({ err }, 'delivery step failed'));
  }

  /** Catch-up steps queued or running: while any is, live reads wait their turn. */
  #syncsAhead = 0;

  #pushSync(step: () => Promise<void>): void {
    this.#syncsAhead++;
    this.#push(() => step().finally(() => this.#syncsAhead--));
  }

  /** Runs `read` until it succeeds; undefined if the daemon stops first (see src/util/retry.ts). */
  #retry<T>(what: string, read: () => Promise<T>, opts: { giveUpOnBadInput?: boolean; abandoned?: () => boolean } = {}): Promise<T | undefined> {
    const { abandoned, ...rest } = opts;
    return retry(what, read, { log: this.#o.log, stopped: () => this.#stopping || (abandoned?.() ?? false), ...rest });
  }

  /** The rows a live step delivers: its transactions' changes for the users live right now. */
  #readLive(batch: LiveTx[]): Promise<ChangeBatch | undefined> {
    const txids = [...new Set(batch.flatMap((b) => (b.txid === null ? [] : [b.txid])))];
    const { hub } = this.#o;
    // Streamed transactions (WAL mode) are read even with no one live: a sync about to begin may
    // need them (see recent.ts), and one may begin while the read waits for them to be visible.
    if (txids.length === 0 || (hub.liveUserCount === 0 && !batch.some((b) => b.carried !== undefined))) return Promise.resolve(undefined);
    // Who is live is asked when the rows are read, after any wait for visibility. With very many
    // users connected, filtering costs more than reading the transactions' rows for everyone
    // (fan-out skips users with no socket here).
    const which = (): UserFilter => (hub.liveUserCount > (this.#o.liveFilterMaxUsers ?? LIVE_FILTER_MAX_USERS) ? 'all' : { literal: hub.liveUserIdsLiteral() });
    const started = performance.now();
    const read = this.#retry('reading alerts', () => liveBatch(this.#o.db, batch, which, (uid) => hub.countFor(uid) > 0), { giveUpOnBadInput: true });
    const metrics = this.#o.metrics;
    if (metrics && batch.some((b) => b.txid !== null && !b.carried)) void read.then(() => metrics.liveRead((performance.now() - started) / 1000));
    return read;
  }

  async #live(batch: LiveTx[], read: Promise<ChangeBatch | undefined> | null): Promise<void> {
    const result = await (read ?? this.#readLive(batch));
    // Changes come grouped by transaction in the order asked for: first occurrences in `batch`.
    const changes = result?.changes ?? [];
    let i = 0;
    // What each socket gets from this batch of transactions goes out together at the end, so a
    // burst can be coalesced into fewer frames (see sendAll).
    const outbox: Outbox = new Map();
    const done = new Set<bigint>();
    // In arrival order: a horizon covers only the transactions announced before it, so it moves
    // cursors only after they went out. One transaction can notify more than once (one per
    // statement kind); it is delivered once.
    for (const { txid, xmin } of batch) {
      if (txid === null) {
        if (xmin !== null && xmin > this.#horizon) this.#horizon = xmin;
        continue;
      }
      const tx = BigInt(txid);
      // The poller's horizon (from its own read); one above the transaction's id cannot be.
      if (xmin != null && xmin <= tx && xmin > this.#horizon) this.#horizon = xmin;
      if (done.has(tx)) continue;
      done.add(tx);
      const group: Change[] = [];
      while (i < changes.length && changes[i]!.txid === tx) group.push(changes[i++]!);
      if (group.length > 0) {
        this.#recent.remember(tx, group, result!.unread, this.#horizon);
        fanOut(this.#o, this.#epoch, tx, group, result!.unread, this.#horizon, outbox);
      }
    }
    for (const [sub, frames] of outbox) sendAll(sub, frames);
    if (this.#o.metrics && result) {
      let streamed = 0;
      let forwarded = 0;
      for (const e of batch) {
        if (e.txid === null || !e.carried) continue;
        if (e.counted) forwarded++;
        else streamed++;
      }
      this.#o.metrics.liveTransactions('stream', streamed);
      this.#o.metrics.liveTransactions('forwarded', forwarded);
      this.#o.metrics.liveTransactions('read', done.size - streamed - forwarded);
      const now = performance.now();
      for (const { at, txid } of batch) if (txid !== null) this.#o.metrics.deliveryLatency((now - at) / 1000);
    }
  }

  /**
   * Brings subscribers up to date from their cursors. New subscribers get `ready` first and
   * `synced` last and become live; caught-up ones just get what they missed.
   */
  async #sync(subs: Subscriber[], catchUp: boolean): Promise<void> {
    try {
      await this.#syncAll(subs, catchUp);
    } finally {
      // A paused replay settles too: the socket's later messages need not wait for its backlog.
      if (!catchUp) for (const sub of subs) sub.settle();
    }
  }

  async #syncAll(subs: Subscriber[], catchUp: boolean): Promise<void> {
    const { maxReplay } = this.#o;
    const { plans, users, subsOf } = planSync(subs, catchUp);
    const per = this.#o.syncBatchUsers ?? SYNC_BATCH_USERS;
    for (let start = 0; start < users.length; start += per) {
      const slice = users.slice(start, start + per).map(([userId, after]) => ({ userId, after }));
      const mineNow = slice.flatMap((r) => subsOf.get(r.userId)!);
      let result: SinceBatch | undefined;
      for (;;) {
        // First syncs stash what live steps deliver from here on (see the top of this file).
        if (!catchUp) for (const sub of mineNow) sub.stash = [];
        const generation = this.#generation;
        this.#o.log.trace({ users: slice.length, catchUp }, 'reading changes since cursors');
        // A read Postgres refuses for its input (class 22) fails the same way every time: those
        // sockets are closed instead of retried for ever, and retries stop once none is open.
        result = await this.#retry('reading alerts since cursors', () => changesSince(this.#o.db, slice, maxReplay), {
          giveUpOnBadInput: true,
          abandoned: () => mineNow.every((sub) => !sub.open),
        });
        // A connection still on the server that was failed over from: read again, elsewhere.
        if (result && this.#pastEpochs.has(result.epoch)) {
          this.#o.log.warn({ epoch: result.epoch }, 'a read came from the database before its failover; reading again');
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        if (result && result.epoch !== this.#epoch) this.#switchEpoch(result.epoch);
        // The listener lost notifications while this read ran, and its snapshot may predate
        // them: read again, after the new LISTEN (catch-up steps read after it anyway).
        if (!result || catchUp || generation === this.#generation) break;
      }
      if (!result) {
        for (const sub of mineNow) sub.stash = null;
        if (this.#stopping) return;
        for (const sub of mineNow) if (sub.open) sub.ws.close(CloseCode.InternalError, 'could not read this user\'s alerts');
        continue;
      }
      const byUser = new Map<string, Change[]>(slice.map((r) => [r.userId, []]));
      for (const c of result.changes) byUser.get(userOf(c))?.push(c);
      // Handled live (before this read or while it ran) but not seen by it: offered after it.
      const read = result;
      const unseen = this.#recent.entries.filter((e) => !sawTx(read, e.tx));
      for (const sub of mineNow) syncOne(this.#o, this.#epoch, (s) => this.subscribe(s), sub, plans.get(sub)!, result, byUser.get(sub.userId)!, catchUp, unseen);
    }
  }
}
