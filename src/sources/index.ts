/**
 * A source of committed changes: where the daemon (or, in Redis fan-out mode, the relay) hears
 * that transactions changed alerts. Three kinds, picked here and nowhere else:
 *   notify  LISTEN on the triggers' channel (src/sources/listen.ts);
 *   poll    reading new transaction ids every PGBELL_POLL_MS (src/sources/poll.ts);
 *   wal     a logical replication stream of the table and its bookkeeping (src/sources/wal.ts).
 * Delivery, catch-up and the relay see only these events.
 */
import type { EventEmitter } from 'node:events';
import type { Change } from '../db/changes.js';
import type { Db } from '../db/connect.js';
import { Listener, probeQuery } from './listen.js';
import type { Logger } from '../log.js';
import { Poller } from './poll.js';
import { WalSource } from './wal.js';

export type SourceState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

export type Mode = 'notify' | 'poll' | 'wal';

export interface SourceEvents {
  /**
   * A transaction that changed alerts committed, in commit order. `xmin`, when not null, comes
   * from pgbell's own reads (the poller). `carried` is set by WAL mode only: the transaction's
   * changes, complete (the stream carried the rows), or null (read them by transaction id). A
   * streamed transaction can arrive a moment before other sessions' snapshots see it, so reads
   * for it first wait until it is visible. Absent (LISTEN, polling): read by transaction id; the
   * transaction is visible already.
   */
  txid: [txid: string, xmin: bigint | null, carried?: Change[] | null];
  /** Every transaction below `xmin` has been announced by an earlier 'txid' (from the daemon's own probe). */
  horizon: [xmin: bigint];
  /** The source works again after losing its connection: changes committed meanwhile were not announced. */
  resumed: [];
  /** A row was inserted into pgbell_revocation (a hint: the table is checked). */
  revoke: [userId: string, before: number];
}

export interface ChangeSource extends EventEmitter<SourceEvents> {
  readonly state: SourceState;
  /** The last probe failed: changes are not being heard. */
  readonly deaf: boolean;
  /** For /health. */
  status(): { state: SourceState; reconnects: number; [k: string]: unknown };
  /** Checks end to end that changes are heard; never throws. */
  probe(timeoutMs: number): Promise<boolean>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export interface SourceOptions {
  mode: Mode;
  /** The pool: probes, horizons, polls. */
  db: Db;
  /** Where LISTEN or the replication stream connects (LISTEN_DATABASE_URL or DATABASE_URL). */
  listenUrl: string;
  channel: string;
  pollMs: number;
  /** Half-open connections are detected within this. */
  checkIntervalMs: number;
  /** WAL mode: bytes of rows a streaming transaction may hold before it is read by id (tests; see src/sources/wal.ts). */
  walCarryMaxBytes?: number | undefined;
  log: Logger;
}

export function createSource(o: SourceOptions): ChangeSource {
  switch (o.mode) {
    case 'poll':
      return new Poller({ db: o.db, intervalMs: o.pollMs, log: o.log });
    case 'wal':
      return new WalSource({ connectionString: o.listenUrl, db: o.db, log: o.log, checkIntervalMs: o.checkIntervalMs, carryMaxBytes: o.walCarryMaxBytes });
    case 'notify':
      return new Listener({
        connectionString: o.listenUrl,
        channel: o.channel,
        log: o.log,
        checkIntervalMs: o.checkIntervalMs,
        notify: async (nonce) => void (await probeQuery(o.channel, nonce).execute(o.db)),
      });
  }
}
