/**
 * Each user's latest revocation, kept in memory so that authenticating a socket costs no query.
 *
 * The table (pgbell_revocation) is the truth; the copy is trusted only while the daemon's own
 * source of revocation hints (LISTEN, the poller, the WAL stream) is connected and the copy was
 * read after that source came back, so no revocation can have slipped between the two. Every
 * hint re-reads its user from the table (a hint's contents are never trusted), and the whole
 * table is read again every heartbeat, for revocations written without a hint (triggers off).
 * Whenever the copy cannot be trusted, each authentication reads the table as before.
 */
import type { Db } from '../db/connect.js';
import { allRevocations, revokedBefore } from '../db/users.js';
import type { Logger } from '../log.js';
import type { ChangeSource } from './types.js';

export class Revocations {
  #copy = new Map<string, number>();
  #trusted = false;
  /** Bumped by every reload and distrust: a read that finishes after a newer one is dropped. */
  #generation = 0;
  /** What was read per user while a reload ran, applied over its result. */
  #since = new Map<string, number>();
  /** The source's reconnect count when the trusted copy was read: a later gap voids it. */
  #reconnects = -1;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    /** Where hints come from. */
    private readonly source: Pick<ChangeSource, 'state' | 'deaf' | 'status'>,
  ) {}

  #sourceUp(): boolean {
    return this.source.state === 'connected' && !this.source.deaf;
  }

  /** Reads the whole table again; trusted once it is back (at start, after a gap, each heartbeat). */
  async reload(): Promise<void> {
    const generation = ++this.#generation;
    this.#since = new Map();
    // Read after the source was up: a revocation before the read is in it, one after is hinted.
    const reconnects = this.source.status().reconnects;
    const up = this.#sourceUp();
    try {
      const all = await allRevocations(this.db);
      if (generation !== this.#generation) return;
      for (const [userId, before] of this.#since) if (before > (all.get(userId) ?? -Infinity)) all.set(userId, before);
      this.#copy = all;
      this.#trusted = up;
      this.#reconnects = reconnects;
    } catch (err) {
      if (generation === this.#generation) this.#trusted = false;
      this.log.warn({ err: (err as Error).message }, 'reading revocations failed; each authentication reads the table until it works');
    }
  }

  /** The table's answer for these users (after a hint): kept. */
  record(found: ReadonlyMap<string, number>): void {
    for (const [userId, before] of found) {
      if (before > (this.#copy.get(userId) ?? -Infinity)) this.#copy.set(userId, before);
      if (before > (this.#since.get(userId) ?? -Infinity)) this.#since.set(userId, before);
    }
  }

  /** A user's latest revocation (seconds since the epoch), or null. */
  async before(userId: string): Promise<number | null> {
    if (this.#trusted && this.#sourceUp() && this.source.status().reconnects === this.#reconnects) return this.#copy.get(userId) ?? null;
    return (await revokedBefore(this.db, [userId])).get(userId) ?? null;
  }
}
