/**
 * How a Delivery is set up: what the daemon passes in, and the tuning defaults behind the
 * optional settings. Separate so the knobs and why each default is what it is read without the
 * machinery that uses them.
 */
import type { Db } from '../db/connect.js';
import type { Hub } from './hub.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

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

export interface DeliveryOptions {
  db: Db;
  hub: Hub;
  log: Logger;
  /**
   * The epoch at start (see EPOCH in src/db/epoch.ts): it goes into every cursor, and a
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
  /** Bytes of rows the recent-transaction memory keeps at most (default RECENT_MAX_BYTES; see recent.ts). */
  recentMaxBytes?: number | undefined;
  metrics?: Metrics;
}
