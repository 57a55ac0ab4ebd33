/**
 * The relay of Redis fan-out mode: of all nodes, the one holding a Postgres advisory lock LISTENs
 * (the only LISTEN connection in the fleet), reads each committed transaction's changes once,
 * and publishes them per user. The others keep trying the lock; when the relay dies its session
 * ends, the lock is free, and within a retry interval another node takes over and first publishes
 * everything since the horizon the previous relay recorded in pgbell_state.
 */
import { sql } from 'kysely';
import pg from 'pg';
import { changesByTxids, changesSinceAll, type ChangeBatch } from '../db/changes.js';
import type { Db } from '../db/connect.js';
import { Listener } from '../listener.js';
import type { Logger } from '../log.js';
import type { RedisFanout } from './redis.js';

/** Advisory lock key of the relay role: "pgbellR". */
const RELAY_LOCK = 0x706762656c6c52n;
/** Rows per catch-up page. */
const PAGE = 20_000;

export interface RelayOptions {
  databaseUrl: string;
  listenUrl: string;
  channel: string;
  db: Db;
  fanout: RedisFanout;
  log: Logger;
  heartbeatMs: number;
  /** How often a standby node tries to become the relay. */
  retryMs?: number;
}

export class Relay {
  #lock: pg.Client | null = null;
  #listener: Listener | null = null;
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<void> = Promise.resolve();
  #horizon = 0n;
  #closed = false;
  #trying = false;
  readonly #o: RelayOptions;

  constructor(opts: RelayOptions) {
    this.#o = opts;
  }

  get isRelay(): boolean {
    return this.#listener !== null;
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
    const listener = new Listener({
      connectionString: this.#o.listenUrl,
      channel: this.#o.channel,
      log,
      checkIntervalMs: this.#o.heartbeatMs,
      notify: async (payload) => void (await sql`SELECT pg_notify(${this.#o.channel}, ${payload})`.execute(db)),
    });
    const xmins = new Map<string, bigint | null>();
    let pending: string[] = [];
    let scheduled = false;
    listener.on('txid', (txid, xmin) => {
      xmins.set(txid, xmin);
      pending.push(txid);
      if (scheduled) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        const batch = [...new Set(pending)];
        pending = [];
        this.#push(() => this.#relay(batch, xmins));
      });
    });
    listener.on('resumed', () => this.#push(() => this.#catchUp()));
    listener.on('revoke', (userId, before) => void fanout.publishRevocation(userId, before).catch(() => {}));
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

  async #retry<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    for (let attempt = 0; ; attempt++) {
      if (!this.isRelay) return undefined;
      try {
        return await fn();
      } catch (err) {
        this.#o.log.warn({ err: (err as Error).message, attempt }, `${what} failed; retrying`);
        await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** attempt)));
      }
    }
  }

  /** Reads the notified transactions' changes for every user and publishes them in commit order. */
  async #relay(txids: string[], xmins: Map<string, bigint | null>): Promise<void> {
    const batch = await this.#retry('relay read', () => changesByTxids(this.#o.db, txids, 'all'));
    if (!batch) return;
    for (const txid of txids) {
      const tx = BigInt(txid);
      const one: ChangeBatch = { changes: batch.changes.filter((c) => c.txid === tx), unread: batch.unread };
      const xmin = xmins.get(txid) ?? null;
      xmins.delete(txid);
      if (one.changes.length > 0) await this.#retry('publishing', () => this.#o.fanout.publish(one, () => (xmin !== null && xmin <= tx ? xmin : null)));
      if (xmin !== null && xmin <= tx && xmin > this.#horizon) this.#horizon = xmin;
    }
    await this.#record();
  }

  /** Publishes everything since the recorded horizon (a takeover, or this relay's listener came back). */
  async #catchUp(): Promise<void> {
    const { db, fanout, log } = this.#o;
    const stored = await this.#retry('reading the relay horizon', async () => {
      const { rows } = await sql<{ h: string | null; now: string }>`SELECT "relayTxid"::text AS h, pg_snapshot_xmin(pg_current_snapshot())::text AS now FROM pgbell_state`.execute(db);
      return rows[0]!;
    });
    if (!stored) return;
    let after = stored.h === null ? BigInt(stored.now) : BigInt(stored.h);
    let published = 0;
    let limit = PAGE;
    for (;;) {
      const page = await this.#retry('relay catch-up read', () => changesSinceAll(db, after, limit));
      if (!page) return;
      let changes = page.batch.changes;
      if (page.full) {
        // The page may end inside its last transaction: leave that one for the next page.
        const last = changes.at(-1)!.txid;
        const whole = changes.filter((c) => c.txid !== last);
        if (whole.length === 0) {
          limit *= 2;
          continue;
        }
        changes = whole;
        after = last;
      }
      if (changes.length > 0) await this.#retry('publishing', () => fanout.publish({ changes, unread: page.batch.unread }, () => null));
      published += changes.length;
      if (!page.full) {
        if (page.xmin > this.#horizon) this.#horizon = page.xmin;
        break;
      }
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
