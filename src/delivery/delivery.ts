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
 */
import { CursorState, decodeCursor, resumeProblem } from './cursor.js';
import { changesSince, liveBatch, sawTx, unreadOf, type Change, type ChangeBatch, type SinceBatch, type UnreadByType, type UserFilter } from '../db/changes.js';
import type { Db } from '../db/connect.js';
import { CloseCode } from '../errors.js';
import type { Hub, Subscriber } from './hub.js';
import type { Stashed, UserChanges } from './stash.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { retry } from '../util/retry.js';
import { approxBytes } from '../util/size.js';

/**
 * Above this many connected users, live reads are not filtered by user in SQL. Below it the
 * filter spares reading the rows and unread counts of users with no socket here (a statement
 * for 10,000 users costs over 100 ms unfiltered). Above it, a generic plan walks the
 * ("userId", "changedTxid") index once per listed user: with 1,000 users connected that made
 * every single-row read cost milliseconds under load (p50 at 1,000 INSERTs/s: 11.6 ms filtered
 * against about 1–2 ms unfiltered).
 */
export const LIVE_FILTER_MAX_USERS = 100;

/** Users per catch-up read: 10k sockets mean 20 reads, not 10k. */
export const SYNC_BATCH_USERS = 500;

/**
 * Sync reads running at once, off the live chain. Two keep a storm moving while leaving the
 * pool's other connections to live reads.
 */
const SYNC_RUNNERS = 2;

/** How long, and how many, live transactions are kept for sync reads that did not see them (see #recent). */
const RECENT_MS = 10_000;
const RECENT_MAX = 2_000;
/**
 * And how many bytes of their rows (see src/util/size.ts): a count alone let a burst of bulk
 * transactions (a backfill of 2,000 transactions of 10,000 rows) keep every row for 10 s.
 */
export const RECENT_MAX_BYTES = 32 << 20;

/** A transaction a live step handled, kept a while (see Delivery.#recent). */
interface Recent {
  tx: bigint;
  group: Change[];
  unread: Map<string, UnreadByType>;
  horizon: bigint;
  at: number;
  /** What `group` holds, about (see src/util/size.ts). */
  bytes: number;
}

export interface DeliveryOptions {
  db: Db;
  hub: Hub;
  log: Logger;
  /**
   * The epoch at start (see EPOCH in src/db/changes.ts): it goes into every cursor, and a
   * cursor of another epoch gets a reset. Every read says which epoch it was taken in; a new
   * one (a failover) resets every socket.
   */
  epoch: string;
  /** More changes than this to replay for one user → reset instead. */
  maxReplay: number;
  /** Users per read when syncing or catching up (default SYNC_BATCH_USERS). */
  syncBatchUsers?: number;
  /** Above this many connected users, live reads are not filtered by user (default LIVE_FILTER_MAX_USERS). */
  liveFilterMaxUsers?: number | undefined;
  /** Bytes of rows the recent-transaction memory keeps at most (default RECENT_MAX_BYTES; see #recent). */
  recentMaxBytes?: number | undefined;
  metrics?: Metrics;
}

/**
 * An entry of the live stream, in arrival order: a transaction to read (`txid`), or a horizon
 * (`txid` null): every transaction below `xmin` was announced by an earlier entry.
 */
interface LiveTx {
  txid: string | null;
  xmin: bigint | null;
  /** WAL mode: the transaction's changes as the stream carried them, or null (read them); see SourceEvents. */
  carried?: Change[] | null | undefined;
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

  constructor(opts: DeliveryOptions) {
    this.#o = opts;
    this.#epoch = opts.epoch;
  }

  get epoch(): string {
    return this.#epoch;
  }

  /**
   * A read came back from a new epoch: the server is a promoted standby (or a restore), which
   * may have lost transactions every socket was sent, and hands their ids out again. Nothing
   * learnt on the old epoch holds: the daemon-wide horizon, the recent live transactions, and
   * every socket's cursor. Live steps skip sockets of the old epoch (see #offer) until the
   * catch-up queued here resets them: `reset`, then a read from now.
   */
  #switchEpoch(epoch: string): void {
    this.#o.log.warn({ from: this.#epoch, to: epoch }, 'the database is on a new timeline (a failover or a restore): resetting every socket');
    this.#pastEpochs.add(this.#epoch);
    this.#epoch = epoch;
    this.#horizon = 0n;
    this.#recent = [];
    this.#recentBytes = 0;
    this.catchUp();
  }

  /**
   * A transaction's notification arrived (in commit order). `xmin`, when given, must come from
   * pgbell's own reads (the poller), never from a payload.
   */
  enqueue(txid: string, xmin: bigint | null = null, carried?: Change[] | null): void {
    this.#pendingLive.push({ txid, xmin, carried, at: performance.now() });
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
        this.#remember(tx, group, batch.unread, horizon);
        this.#fanOut(tx, group, batch.unread, horizon, outbox);
      }
      for (const [sub, frames] of outbox) sendAll(sub, frames);
    });
  }

  /**
   * Live transactions of the last RECENT_MS, for a sync read that did not see them: a
   * transaction can stream (WAL mode) or be published (Redis mode) a moment before it is
   * visible to other sessions' snapshots, so a live step may have handled it before a
   * subscriber's read began and the read still missed it.
   */
  #recent: Recent[] = [];
  /** The `bytes` of #recent, together. */
  #recentBytes = 0;

  /** Bytes of rows the recent-transaction memory holds now, about (a gauge). */
  get recentBytes(): number {
    return this.#recentBytes;
  }

  /**
   * Keeps a live transaction for the syncs that may not have seen it, dropping the oldest past
   * RECENT_MS, RECENT_MAX transactions or recentMaxBytes (the newest too, if it alone is more).
   * The oldest are the least likely to be needed: a transaction is left out of a sync read only
   * while it is not yet visible to other sessions, a moment after it streamed.
   */
  #remember(tx: bigint, group: Change[], unread: Map<string, UnreadByType>, horizon: bigint): void {
    const now = performance.now();
    let bytes = 0;
    for (const c of group) bytes += approxBytes(c);
    this.#recent.push({ tx, group, unread, horizon, at: now, bytes });
    this.#recentBytes += bytes;
    const maxBytes = this.#o.recentMaxBytes ?? RECENT_MAX_BYTES;
    let drop = 0;
    while (drop < this.#recent.length && (now - this.#recent[drop]!.at > RECENT_MS || this.#recent.length - drop > RECENT_MAX || this.#recentBytes > maxBytes)) {
      this.#recentBytes -= this.#recent[drop++]!.bytes;
    }
    if (drop > 0) this.#recent.splice(0, drop);
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

  /** Starts sync runners while there are subscribers waiting; each takes everything queued. */
  #runSyncs(): void {
    while (this.#syncQueue.length > 0 && this.#syncRunners < SYNC_RUNNERS) {
      const subs = this.#syncQueue;
      this.#syncQueue = [];
      this.#syncRunners++;
      void this.#sync(subs, false)
        .catch((err) => this.#o.log.error({ err }, 'syncing subscribers failed'))
        .finally(() => {
          this.#syncRunners--;
          if (this.#syncQueue.length > 0 && !this.#stopping) this.#runSyncs();
          else if (this.#syncRunners === 0) for (const done of this.#syncIdle.splice(0)) done();
        });
    }
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
    // need them (see #recent), and one may begin while the read waits for them to be visible.
    if (txids.length === 0 || (hub.liveUserIds().length === 0 && !batch.some((b) => b.carried !== undefined))) return Promise.resolve(undefined);
    // Who is live is asked when the rows are read, after any wait for visibility. With very many
    // users connected, filtering costs more than reading the transactions' rows for everyone
    // (fan-out skips users with no socket here).
    const which = (): UserFilter => (hub.liveUserIds().length > (this.#o.liveFilterMaxUsers ?? LIVE_FILTER_MAX_USERS) ? 'all' : { literal: hub.liveUserIdsLiteral() });
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
        this.#remember(tx, group, result!.unread, this.#horizon);
        this.#fanOut(tx, group, result!.unread, this.#horizon, outbox);
      }
    }
    for (const [sub, frames] of outbox) sendAll(sub, frames);
    if (this.#o.metrics && result) {
      let streamed = 0;
      for (const e of batch) if (e.txid !== null && e.carried) streamed++;
      this.#o.metrics.liveTransactions('stream', streamed);
      this.#o.metrics.liveTransactions('read', done.size - streamed);
      const now = performance.now();
      for (const { at, txid } of batch) if (txid !== null) this.#o.metrics.deliveryLatency((now - at) / 1000);
    }
  }

  /**
   * Queues one transaction's changes in `outbox` for each live subscriber of their users that
   * lacks it, and stashes them on each subscriber whose sync read is running.
   */
  #fanOut(tx: bigint, group: Change[], unread: Map<string, UnreadByType>, horizon: bigint, outbox: Outbox): void {
    const { hub, log } = this.#o;
    const byUser = new Map<string, Change[]>();
    for (const c of group) {
      const uid = userOf(c);
      let list = byUser.get(uid);
      if (!list) byUser.set(uid, (list = []));
      list.push(c);
    }
    // One line per alert and user is for a person watching (dev's default level is debug); at
    // info it cost half of delivery's latency at 1,000 alerts/s. The info summary counts them.
    const logEach = log.isLevelEnabled('debug');
    // Counted here and added to the metrics once: a labelled counter costs a lookup per call.
    const counts = { notification: 0, update: 0, delete: 0 };
    let alerts = 0;
    for (const [uid, list] of byUser) {
      // Reads for everyone (many users connected, or Redis mode's relay) include users with no socket here.
      if (hub.countFor(uid) === 0) continue;
      const changes = userChanges(tx, list, unread.get(uid));
      const { kinds } = changes;
      let sent = 0;
      for (const sub of hub.receiving(uid)) {
        if (sub.stash) sub.stash.push({ tx, horizon, changes });
        else if (this.#offer(sub, tx, changes, horizon, outbox, counts)) sent++;
      }
      if (sent > 0) for (let k = 0; k < list.length; k++) if (kinds[k] === 'notification') alerts++;
      if (logEach) {
        for (const c of list) {
          if (c.kind === 'alert' && c.insertTxid === tx) log.debug({ userId: uid, alertId: c.alert.id, connections: sent }, `Broadcasted notification to user ${uid} (${sent} connections)`);
        }
      }
    }
    this.#count(counts, alerts);
  }

  #count(counts: Record<'notification' | 'update' | 'delete', number>, alerts: number): void {
    if (!this.#o.metrics) return;
    for (const kind of ['notification', 'update', 'delete'] as const) if (counts[kind] > 0) this.#o.metrics.delivered(kind, counts[kind]);
    this.#o.metrics.tally.alerts += alerts;
  }

  /** Queues one transaction's changes for one live subscriber unless it has them; true if any message was queued. */
  #offer(sub: Subscriber, tx: bigint, ch: UserChanges, horizon: bigint, outbox: Outbox, counts: Record<'notification' | 'update' | 'delete', number>): boolean {
    const cursor = sub.cursor!;
    // A cursor of an old epoch may "have" an id the new one handed to another transaction.
    if (sub.epoch !== this.#epoch || cursor.has(tx)) return false;
    const { list, kinds, alertJson, bodies } = ch;
    const picked = sub.types === null ? ch.all : ch.all.filter((k) => wants(sub, list[k]!));
    cursor.advance(horizon);
    // Until its last message arrives, a client has not seen the whole transaction. (Only
    // encoded when there is more than one message: most transactions write one row.)
    const before = picked.length > 1 ? cursor.encode(this.#epoch) : '';
    cursor.add(tx);
    if (picked.length === 0) return false;
    const after = cursor.encode(this.#epoch);
    const n = unreadOf(ch.byType, sub.types);
    let out = outbox.get(sub);
    if (!out) outbox.set(sub, (out = []));
    picked.forEach((k, j) => out.push({ body: bodies[k]!, alert: kinds[k] === 'notification' ? alertJson[k]! : null, unread: n, cursor: j === picked.length - 1 ? after : before }));
    for (const k of picked) counts[kinds[k]!]++;
    sub.unread = n;
    return true;
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
    const plans = new Map<Subscriber, Plan>();
    for (const sub of subs) {
      if (!sub.open) continue;
      if (sub.resumeFrom) {
        plans.set(sub, { from: sub.resumeFrom, epoch: sub.epoch, reset: null });
      } else if (catchUp) {
        plans.set(sub, { from: sub.cursor, epoch: sub.epoch, reset: null });
      } else if (sub.after === null) {
        plans.set(sub, { from: null, epoch: '', reset: null });
      } else {
        const d = decodeCursor(sub.after);
        plans.set(sub, d.ok ? { from: d.cursor, epoch: d.epoch, reset: null } : { from: null, epoch: '', reset: d.reason });
      }
    }
    // One read per batch of users, from the oldest horizon among each user's subscribers.
    const afterByUser = new Map<string, bigint | null>();
    for (const [sub, plan] of plans) {
      const h = plan.from?.horizon ?? null;
      const prev = afterByUser.get(sub.userId);
      afterByUser.set(sub.userId, prev === undefined ? h : prev === null ? h : h === null || prev < h ? prev : h);
    }
    const users = [...afterByUser];
    const subsOf = new Map<string, Subscriber[]>();
    for (const sub of plans.keys()) {
      const list = subsOf.get(sub.userId);
      if (list) list.push(sub);
      else subsOf.set(sub.userId, [sub]);
    }
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
      const unseen = this.#recent.filter((e) => !sawTx(read, e.tx));
      for (const sub of mineNow) this.#syncOne(sub, plans.get(sub)!, result, byUser.get(sub.userId)!, catchUp, unseen);
    }
  }

  /**
   * What live steps handled that the sync read did not see (in live order), then what they
   * stashed while it ran, minus what the subscriber has (its cursor says): now live.
   */
  #sendStash(sub: Subscriber, unseen: Recent[]): void {
    const stash = sub.stash;
    sub.stash = null;
    const missed: Stashed[] = [];
    for (const e of unseen) {
      const list = e.group.filter((c) => userOf(c) === sub.userId);
      if (list.length > 0) missed.push({ tx: e.tx, horizon: e.horizon, changes: userChanges(e.tx, list, e.unread.get(sub.userId)) });
    }
    if (missed.length === 0 && (!stash || stash.length === 0)) return;
    const outbox: Outbox = new Map();
    const counts = { notification: 0, update: 0, delete: 0 };
    for (const { tx, horizon, changes } of [...missed, ...(stash ?? [])]) this.#offer(sub, tx, changes, horizon, outbox, counts);
    for (const [s, frames] of outbox) sendAll(s, frames);
    this.#count(counts, 0);
  }

  #syncOne(sub: Subscriber, plan: Plan, res: SinceBatch, mine: Change[], catchUp: boolean, unseen: Recent[]): void {
    if (!sub.open) return;
    // A replay is written as it goes: corked, its frames would count against the socket's
    // bound before the kernel had taken any, and a backlog would pause at every bound's worth.
    if (mine.length > 0) this.#sendSync(sub, plan, res, mine, catchUp, unseen);
    else sub.corked(() => this.#sendSync(sub, plan, res, mine, catchUp, unseen));
  }

  #sendSync(sub: Subscriber, plan: Plan, res: SinceBatch, mine: Change[], catchUp: boolean, unseen: Recent[]): void {
    const { log } = this.#o;
    const uid = sub.userId;
    const unread = unreadOf(res.unread.get(uid), sub.types);
    let { from, reset } = plan;
    if (from) {
      reset = resumeProblem(from, plan.epoch, res, uid, this.#o.maxReplay);
      if (reset) from = null;
    }
    if (!sub.readySent) {
      sub.send(JSON.stringify({ type: 'ready', userId: uid, email: sub.email, unread }));
      sub.readySent = true;
    }
    const continuing = sub.resumeFrom !== null;
    sub.resumeFrom = null;
    if (reset) {
      log.info({ userId: uid, reason: reset }, `cursor reset for user ${uid}: ${reset}`);
      sub.send(JSON.stringify({ type: 'reset', reason: reset }));
    }
    let replayed = 0;
    if (from) {
      const cursor = from.encode(res.epoch);
      const sent = new CursorState(from.horizon, from.ids);
      for (let i = 0; i < mine.length; ) {
        const tx = mine[i]!.txid;
        let j = i;
        while (j < mine.length && mine[j]!.txid === tx) j++;
        if (tx >= from.horizon && !from.has(tx)) {
          // A client that reads slower than its backlog arrives: stop between transactions,
          // wait for its buffer to drain, then go on from what it was sent (it is not live
          // meanwhile, so nothing newer overtakes the backlog).
          if (sub.congested) {
            sub.cursor = null;
            // The rest is read again when it goes on, live changes included.
            sub.stash = null;
            sub.resumeFrom = sent;
            sub.epoch = res.epoch;
            log.info({ userId: uid, replayed }, `paused a replay to user ${uid} until its socket drains`);
            void sub.drained().then(() => {
              if (sub.open) void this.subscribe(sub);
            });
            return;
          }
          for (const c of mine.slice(i, j)) {
            if (!wants(sub, c)) continue;
            sub.send(frame(body(c, c.kind === 'alert' && !from.has(c.insertTxid)), unread, cursor), true);
            replayed++;
          }
          sent.add(tx);
        }
        i = j;
      }
    }
    // Seen now: everything below the read's horizon (all finished, so all read), and every
    // transaction at or above it that the read saw, whether sent now or before.
    // Never an id at or above the read's xmax: no committed transaction has one (a row that
    // does came from another cluster's restore), and a cursor holding it would skip the real
    // transaction that gets it later.
    const next = new CursorState(res.xmin, from?.ids ?? []);
    for (const c of mine) if (c.txid < res.xmax) next.add(c.txid);
    sub.cursor = next;
    sub.epoch = res.epoch;
    sub.unread = unread;
    if (!catchUp || reset || continuing) sub.send(JSON.stringify({ type: 'synced', cursor: next.encode(res.epoch), unread }));
    this.#sendStash(sub, unseen);
    this.#o.metrics?.replayed(replayed, catchUp);
    // Per socket, so debug: after a restart every socket resumes (the info summary counts them).
    if (replayed > 0 && log.isLevelEnabled('debug')) log.debug({ userId: uid, replayed, catchUp }, `replayed ${replayed} changes to user ${uid}`);
  }
}

/** What a sync reads from for one subscriber: a cursor and its epoch, or nothing (with why not). */
interface Plan {
  from: CursorState | null;
  epoch: string;
  reset: string | null;
}

/** One transaction's changes for one user, ready for any of its sockets (each alert serialized once). */
function userChanges(tx: bigint, list: Change[], byType: UnreadByType | undefined): UserChanges {
  const kinds = list.map((c) => (c.kind === 'delete' ? 'delete' : c.insertTxid === tx ? 'notification' : 'update'));
  const alertJson = list.map((c) => (c.kind === 'alert' ? JSON.stringify(c.alert) : ''));
  return { list, all: list.map((_, k) => k), kinds, alertJson, bodies: list.map((c, k) => body(c, kinds[k] === 'notification', alertJson[k]!)), byType };
}

/** Deletes always go out: a tombstone has no type, and an unknown id is ignored by clients. */
function wants(sub: Subscriber, c: Change): boolean {
  return sub.types === null || c.kind === 'delete' || sub.types.has(c.alert.type);
}

function userOf(c: Change): string {
  return c.kind === 'alert' ? c.alert.userId : c.userId;
}

/** A message without its trailing unread count and cursor, so one serialization serves every socket. */
function body(c: Change, isNew: boolean, alertJson = c.kind === 'alert' ? JSON.stringify(c.alert) : ''): string {
  if (c.kind === 'delete') return `{"type":"delete","id":${JSON.stringify(c.id)}`;
  return `{"type":"${isNew ? 'notification' : 'update'}","alert":${alertJson}`;
}

/** A message bound for one socket: its body, the alert's JSON if it is a new alert, its unread count and cursor. */
interface Outgoing {
  body: string;
  alert: string | null;
  unread: number;
  cursor: string;
}
type Outbox = Map<Subscriber, Outgoing[]>;

/**
 * Sends one socket its messages from one live batch, in order. A socket that asked for batches
 * gets each run of new alerts as one `notifications` frame carrying the run's last unread count
 * and cursor: a frame arrives whole or not at all, so that cursor is as safe as the last
 * message's would be.
 */
function sendAll(sub: Subscriber, out: Outgoing[]): void {
  for (let i = 0; i < out.length; ) {
    const first = out[i]!;
    let j = i + 1;
    if (sub.batch && first.alert !== null) while (j < out.length && out[j]!.alert !== null) j++;
    if (j - i === 1) {
      sub.send(frame(first.body, first.unread, first.cursor));
    } else {
      const last = out[j - 1]!;
      const alerts: string[] = [];
      for (let k = i; k < j; k++) alerts.push(out[k]!.alert!);
      sub.send(`{"type":"notifications","alerts":[${alerts.join(',')}],"unread":${last.unread},"cursor":"${last.cursor}"}`);
    }
    i = j;
  }
}

function frame(b: string, unread: number, cursor: string): string {
  return `${b},"unread":${unread},"cursor":"${cursor}"}`;
}
