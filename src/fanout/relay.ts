/**
 * The relay of Redis fan-out mode: of all nodes, the one holding a Postgres advisory lock LISTENs
 * (the only LISTEN connection in the fleet), reads each committed transaction's changes once,
 * and publishes them per user. The others keep trying the lock; when the relay dies its session
 * ends, the lock is free, and within a retry interval another node takes over and first publishes
 * everything since the horizon the previous relay recorded in pgbell_state.
 */
import { sql } from 'kysely';
import pg from 'pg';
import { changesSinceAll, currentEpoch, liveBatch, type Change, type ChangeBatch } from '../db/changes.js';
import type { Db } from '../db/connect.js';
import { revokedBefore } from '../db/users.js';
import { createSource, type ChangeSource, type Mode } from '../sources/index.js';
import type { Logger } from '../log.js';
import { retry } from '../util/retry.js';
import type { RedisFanout } from './redis.js';

/** Advisory lock key of the relay role: "pgbellR". */
const RELAY_LOCK = 0x706762656c6c52n;
/** Rows per catch-up page. */
const PAGE = 20_000;

type RelayEntry = { txid: string; carried: Change[] | null | undefined } | { horizon: bigint };

export interface RelayOptions {
  /** notify or wal: where the relay hears of committed changes (see src/sources/index.ts). */
  mode: Mode;
  databaseUrl: string;
  listenUrl: string;
  channel: string;
  db: Db;
  fanout: RedisFanout;
  log: Logger;
  heartbeatMs: number;
  /** How often a standby node tries to become the relay. */
  retryMs?: number;
  /** Alert rows per catch-up page (default PAGE). */
  pageRows?: number;
}

export class Relay {
  #lock: pg.Client | null = null;
  #listener: ChangeSource | null = null;
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<void> = Promise.resolve();
  #horizon = 0n;
  /** The epoch this relay reads in (see EPOCH in src/db/epoch.ts), sent with every message. */
  #epoch = '';
  #closed = false;
  #trying = false;
  readonly #o: RelayOptions;

  constructor(opts: RelayOptions) {
    this.#o = opts;
  }

  get isRelay(): boolean {
    return this.#listener !== null;
  }

  /** While this node is the relay: the last probe of its LISTEN (for /health); else null. */
  get probeStatus(): { ok: boolean | null; at: string | null } | null {
    return (this.#listener?.status().probe as { ok: boolean | null; at: string | null } | undefined) ?? null;
  }

  /**
   * While this node is the relay, checks its LISTEN end to end (a transaction pooler, a replica
   * or a half-open connection would otherwise be a silent fleet-wide outage). Never throws.
   */
  async probe(timeoutMs: number): Promise<void> {
    await this.#listener?.probe(timeoutMs);
  }

  start(): void {
    const tick = () => void this.#tryAcquire();
    tick();
    this.#timer = setInterval(tick, this.#o.retryMs ?? 1000);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#demote();
    await this.#chain;
  }

  async #tryAcquire(): Promise<void> {
    if (this.#closed || this.#trying || this.#lock) return;
    this.#trying = true;
    const client = new pg.Client({ connectionString: this.#o.databaseUrl, application_name: 'pgbell-relay-lock', keepAlive: true });
    // Until the lock is held, a failure surfaces through the awaited calls (no uncaught 'error').
    client.on('error', () => {});
    try {
      await client.connect();
      const { rows } = await client.query<{ got: boolean }>('SELECT pg_try_advisory_lock($1) AS got', [RELAY_LOCK.toString()]);
      if (!rows[0]!.got || this.#closed) {
        await client.end();
        return;
      }
      this.#lock = client;
      // The lock lives as long as this session: if it ends, someone else may be relaying now.
      const lost = () => {
        if (this.#lock !== client) return;
        this.#o.log.warn('the relay lost its lock connection; standing down');
        void this.#demote();
      };
      client.on('error', lost);
      client.on('end', lost);
      await this.#promote();
    } catch (err) {
      this.#o.log.warn({ err: (err as Error).message }, 'trying the relay lock failed');
      await client.end().catch(() => {});
    } finally {
      this.#trying = false;
    }
  }

  async #promote(): Promise<void> {
    const { db, fanout, log } = this.#o;
    const listener = createSource({ mode: this.#o.mode, db, listenUrl: this.#o.listenUrl, channel: this.#o.channel, pollMs: 100, checkIntervalMs: this.#o.heartbeatMs, log });
    // In arrival order: transactions to read, and horizons from this relay's own probes (never
    // a payload's). A horizon covers only what was announced before it.
    let pending: RelayEntry[] = [];
    let scheduled = false;
    const queue = (e: RelayEntry) => {
      pending.push(e);
      if (scheduled) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        const batch = pending;
        pending = [];
        this.#push(() => this.#relay(batch));
      });
    };
    listener.on('txid', (txid, _xmin, carried) => queue({ txid, carried }));
    listener.on('horizon', (xmin) => queue({ horizon: xmin }));
    listener.on('resumed', () => this.#push(() => this.#catchUp()));
    // A revocation payload is a hint: publish what pgbell_revocation says, if anything.
    listener.on('revoke', (userId) =>
      void revokedBefore(db, [userId]).then(
        (found) => Promise.all([...found].map(([id, before]) => fanout.publishRevocation(id, before))),
        (err) => log.warn({ err: (err as Error).message }, 'checking a revocation failed'),
      ).catch(() => {}),
    );
    this.#listener = listener;
    await listener.start();
    log.info('this node is now the relay (the only LISTEN connection in the fleet)');
    // LISTEN is on: what committed before it, the previous relay may not have published.
    this.#push(() => this.#catchUp());
  }

  async #demote(): Promise<void> {
    const listener = this.#listener;
    const lock = this.#lock;
    this.#listener = null;
    this.#lock = null;
    await listener?.close();
    await lock?.end().catch(() => {});
  }

  #push(step: () => Promise<void>): void {
    this.#chain = this.#chain.then(step).catch((err) => this.#o.log.error({ err }, 'relay step failed'));
  }

  /** Retries while this node is the relay (see src/util/retry.ts). */
  #retry<T>(what: string, fn: () => Promise<T>, opts: { giveUpOnBadInput?: boolean } = {}): Promise<T | undefined> {
    return retry(what, fn, { log: this.#o.log, stopped: () => !this.isRelay, ...opts });
  }

  /** Reads the notified transactions' changes for every user and publishes them in commit order. */
  async #relay(entries: RelayEntry[]): Promise<void> {
    const live = entries.flatMap((e) => ('txid' in e ? [e] : []));
    const txids = [...new Set(live.map((e) => e.txid))];
    const batch = txids.length > 0 ? await this.#retry('relay read', () => liveBatch(this.#o.db, live, 'all'), { giveUpOnBadInput: true }) : undefined;
    if (txids.length > 0 && !batch) return;
    const done = new Set<string>();
    for (const e of entries) {
      if ('horizon' in e) {
        if (e.horizon > this.#horizon) this.#horizon = e.horizon;
        continue;
      }
      if (done.has(e.txid)) continue;
      done.add(e.txid);
      const tx = BigInt(e.txid);
      const one: ChangeBatch = { changes: batch!.changes.filter((c) => c.txid === tx), unread: batch!.unread };
      // Nodes move a user's cursor to this horizon on this message: everything below it was
      // published before it (on that user's channel too).
      const horizon = this.#horizon > 0n && this.#horizon <= tx ? this.#horizon : null;
      if (one.changes.length > 0) await this.#retry('publishing', () => this.#o.fanout.publish(one, () => horizon, this.#epoch));
    }
    await this.#record();
  }

  /** Publishes everything since the recorded horizon (a takeover, or this relay's listener came back). */
  async #catchUp(): Promise<void> {
    const { db, fanout, log } = this.#o;
    const stored = await this.#retry('reading the relay horizon', async () => {
      const { rows } = await sql<{ h: string | null; now: string; xmax: string }>`SELECT "relayTxid"::text AS h, pg_snapshot_xmin(pg_current_snapshot())::text AS now, pg_snapshot_xmax(pg_current_snapshot())::text AS xmax FROM pgbell_state`.execute(db);
      return { ...rows[0]!, epoch: await currentEpoch(db) };
    });
    if (!stored) return;
    if (stored.epoch !== this.#epoch) {
      // A failover (or the first catch-up): this relay's horizon was the old server's, and ids
      // below it may be handed out again. Nodes that get a message of a new epoch catch up
      // from their cursors, which resets them.
      if (this.#epoch) log.warn({ from: this.#epoch, to: stored.epoch }, 'the database is on a new timeline (a failover or a restore): the relay starts its horizon again');
      this.#epoch = stored.epoch;
      this.#horizon = 0n;
    }
    // A horizon this server has not reached yet was recorded in another cluster (a restore that
    // `pgbell migrate` has not re-stamped): reading from it would publish nothing.
    const foreign = stored.h !== null && BigInt(stored.h) > BigInt(stored.xmax);
    if (foreign) {
      log.warn({ relayTxid: stored.h }, 'the recorded relay horizon is ahead of this server (restored from another cluster?): catching up from now; run `pgbell migrate`');
      // Forgotten, or no later horizon could ever be recorded over it.
      await this.#retry('forgetting a foreign relay horizon', () => sql`UPDATE pgbell_state SET "relayTxid" = NULL`.execute(db));
    }
    let after = stored.h === null || foreign ? BigInt(stored.now) : BigInt(stored.h);
    let published = 0;
    let limit = this.#o.pageRows ?? PAGE;
    for (;;) {
      const page = await this.#retry('relay catch-up read', () => changesSinceAll(db, after, limit));
      if (!page) return;
      const { changes } = page.batch;
      if (page.next !== null && changes.length === 0) {
        // One transaction has more rows than a page: read a bigger one.
        limit *= 2;
        continue;
      }
      if (changes.length > 0) await this.#retry('publishing', () => fanout.publish({ changes, unread: page.batch.unread }, () => null, this.#epoch));
      published += changes.length;
      if (page.next === null) {
        if (page.xmin > this.#horizon) this.#horizon = page.xmin;
        break;
      }
      after = page.next;
    }
    await this.#record();
    log.info({ published }, `relay caught up: published ${published} changes`);
  }

  /** Everything below the horizon has been published: the next relay starts there. */
  async #record(): Promise<void> {
    if (this.#horizon === 0n) return;
    await this.#retry('recording the relay horizon', () => sql`UPDATE pgbell_state SET "relayTxid" = ${this.#horizon.toString()}::xid8 WHERE "relayTxid" IS NULL OR "relayTxid" < ${this.#horizon.toString()}::xid8`.execute(this.#o.db));
  }
}
