/**
 * The seam between the sources and everything above them: the events a source emits and the
 * interface the daemon and the relay hold. Each source (listen.ts, poll.ts, wal.ts) imports these;
 * index.ts picks one.
 */
import type { EventEmitter } from 'node:events';
import type { Change, Counted } from '../db/changes.js';
import type { Db } from '../db/connect.js';
import type { Logger } from '../log.js';

export type { Counted } from '../db/changes.js';

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
   *
   * `counted` is set by a forwarded source only (src/sources/forwarded.ts, a worker of
   * `pgbell start --workers N`): `carried` is then the transaction's changes for every user, as
   * the machine's one reader read them once it was visible, and `counted` the counts read with
   * them. Nothing is read again: no read by id, no count, no wait for visibility.
   */
  txid: [txid: string, xmin: bigint | null, carried?: Change[] | null, counted?: Counted];
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
