/**
 * Poll mode (PGBELL_MODE=poll): finds committed changes by reading "changedTxid" (pgbell."AlertChange",
 * its tombstones and preferences) every
 * PGBELL_POLL_MS instead of LISTENing, for databases where writers should not pay for NOTIFY
 * (a queued NOTIFY holds a cluster-wide lock until the commit is flushed, so notifying writers
 * cannot group-commit; see sql/000006_poll_mode.sql).
 *
 * It emits what the Listener emits (`txid` with a horizon, `revoke`), so delivery is the same
 * code in both modes. One poll is one statement, one snapshot S (xmin, xmax, and the ids in
 * progress between them):
 * - every transaction id that changed a row or left a tombstone and is visible in S, oldest
 *   first, among those the previous snapshot could not see: at or above its xmax, or in
 *   progress then. Everything else below the previous xmax was emitted already, so nothing is
 *   read twice and no set of emitted ids is kept, however long a transaction stays open;
 * - S's xmin: every transaction below it has finished and, if it changed alerts, was in this
 *   or an earlier poll. That is the horizon sent along: for a transaction below xmin, its own
 *   id (every lower one was emitted before it); for one at or above, xmin;
 * - revocations with an id above the last one seen.
 * A failed poll is retried from the same point, so a database restart loses nothing; there is
 * no connection whose loss needs a catch-up.
 */
import { EventEmitter } from 'node:events';
import { sql } from 'kysely';
import { TIMELINE_SQL } from '../db/changes.js';
import type { Db } from '../db/connect.js';
import type { ListenerEvents, ListenerState } from './listen.js';
import type { Logger } from '../log.js';

export interface PollerOptions {
  db: Db;
  intervalMs: number;
  log: Logger;
}

interface Row {
  k: 't' | 'x' | 'm' | 'p' | 'e' | 'r';
  v: string;
  u: string | null;
  b: string | null;
}

export class Poller extends EventEmitter<ListenerEvents> {
  #state: ListenerState = 'connecting';
  #since = new Date();
  #failures = 0;
  #reconnects = 0;
  #probe: { ok: boolean | null; at: string | null } = { ok: null, at: null };
  /** The previous snapshot's xmax: transactions at or above it are read by the next poll. */
  #after = 0n;
  /** The previous snapshot's in-progress transactions: read by the next poll too. */
  #inProgress: string[] = [];
  #lastRevocation = '0';
  /** The server's timeline at the last poll (see TIMELINE in src/db/epoch.ts). */
  #timeline: string | null = null;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<boolean> | null = null;
  readonly #o: PollerOptions;

  constructor(opts: PollerOptions) {
    super();
    this.#o = opts;
  }

  get state(): ListenerState {
    return this.#state;
  }

  get deaf(): boolean {
    return this.#probe.ok === false;
  }

  status(): { state: ListenerState; mode: 'poll'; since: string; reconnects: number; intervalMs: number; probe: { ok: boolean | null; at: string | null } } {
    return { state: this.#state, mode: 'poll', since: this.#since.toISOString(), reconnects: this.#reconnects, intervalMs: this.#o.intervalMs, probe: this.#probe };
  }

  /** Starts from now: what committed before is for sockets to read from their cursors. */
  async start(): Promise<void> {
    const { rows } = await sql<{ x: string; r: string; t: string }>`
      SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x, coalesce(max(id), 0)::text AS r, ${sql.raw(TIMELINE_SQL)}::text AS t
        FROM pgbell_revocation`.execute(this.#o.db);
    this.#after = BigInt(rows[0]!.x);
    this.#timeline = rows[0]!.t;
    this.#lastRevocation = rows[0]!.r;
    this.#setState('connected');
    this.#schedule();
  }

  /** Runs a poll now; true if it worked. (What the Listener's round-trip probe is in notify mode.) */
  async probe(): Promise<boolean> {
    return this.#poll();
  }

  async close(): Promise<void> {
    this.#setState('closed');
    clearTimeout(this.#timer);
    await this.#running;
  }

  #schedule(): void {
    if (this.#state === 'closed') return;
    this.#timer = setTimeout(() => void this.#poll().finally(() => this.#schedule()), this.#o.intervalMs);
  }

  #poll(): Promise<boolean> {
    // One poll at a time: a probe during a scheduled poll shares its outcome.
    this.#running ??= this.#pollOnce().finally(() => (this.#running = null));
    return this.#running;
  }

  async #pollOnce(): Promise<boolean> {
    if (this.#state === 'closed') return false;
    let rows: Row[];
    try {
      ({ rows } = await sql<Row>`
        WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s)
        SELECT 't' AS k, t.tx::text AS v, NULL AS u, NULL AS b FROM (
          SELECT DISTINCT "changedTxid" AS tx FROM "AlertChange"
           WHERE "changedTxid" >= ${this.#after.toString()}::xid8 OR "changedTxid" = ANY(${this.#inProgress}::xid8[])
          UNION
          SELECT txid FROM "AlertTombstone" WHERE txid >= ${this.#after.toString()}::xid8 OR txid = ANY(${this.#inProgress}::xid8[])
          UNION
          SELECT "changedTxid" FROM preference WHERE "changedTxid" >= ${this.#after.toString()}::xid8 OR "changedTxid" = ANY(${this.#inProgress}::xid8[])) t
        UNION ALL
        SELECT 'x', pg_snapshot_xmin(snap.s)::text, NULL, NULL FROM snap
        UNION ALL
        SELECT 'm', pg_snapshot_xmax(snap.s)::text, NULL, NULL FROM snap
        UNION ALL
        SELECT 'p', x::text, NULL, NULL FROM snap, pg_snapshot_xip(snap.s) x
        UNION ALL
        SELECT 'e', ${sql.raw(TIMELINE_SQL)}::text, NULL, NULL
        UNION ALL
        SELECT 'r', id::text, "userId", floor(extract(epoch FROM before))::bigint::text
          FROM pgbell_revocation WHERE id > ${this.#lastRevocation}::bigint`.execute(this.#o.db));
    } catch (err) {
      if (this.#failures++ === 0) {
        this.#reconnects++;
        this.#setState('reconnecting');
        this.#o.log.warn({ err: (err as Error).message }, 'polling for changes failed; retrying from the same point');
      }
      this.#probe = { ok: false, at: new Date().toISOString() };
      return false;
    }
    if (this.#failures > 0) this.#o.log.info('polling for changes works again');
    this.#failures = 0;
    this.#setState('connected');
    this.#probe = { ok: true, at: new Date().toISOString() };

    const xmin = BigInt(rows.find((r) => r.k === 'x')!.v);
    const timeline = rows.find((r) => r.k === 'e')!.v;
    if (this.#timeline !== null && timeline !== this.#timeline) {
      // A promoted standby (or a restore): the point polled from is the old server's, and
      // transaction ids below it may now be handed out again. Poll from this snapshot on, and
      // have everything before it read from cursors (delivery sees the new epoch and resets).
      this.#o.log.warn({ from: this.#timeline, to: timeline }, 'the database is on a new timeline (a failover or a restore): polling from now, catching up from cursors');
      this.#timeline = timeline;
      this.#after = xmin;
      this.#inProgress = [];
      this.emit('resumed');
      return true;
    }
    this.#timeline = timeline;
    const txids = rows
      .filter((r) => r.k === 't')
      .map((r) => BigInt(r.v))
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const r of rows) {
      if (r.k !== 'r') continue;
      if (BigInt(r.v) > BigInt(this.#lastRevocation)) this.#lastRevocation = r.v;
      this.emit('revoke', r.u!, Number(r.b));
    }
    for (const tx of txids) this.emit('txid', tx.toString(), tx < xmin ? tx : xmin);
    this.#after = BigInt(rows.find((r) => r.k === 'm')!.v);
    this.#inProgress = rows.filter((r) => r.k === 'p').map((r) => r.v);
    return true;
  }

  #setState(state: ListenerState): void {
    if (this.#state === state || this.#state === 'closed') return;
    this.#state = state;
    this.#since = new Date();
  }
}
