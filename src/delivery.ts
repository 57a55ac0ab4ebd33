import { alertsByTxids } from './db/alerts.js';
import type { Db } from './db/connect.js';
import type { Hub } from './hub.js';
import type { Logger } from './log.js';

/**
 * Turns committed transaction ids into delivered alerts. Ids that arrive in the same
 * event-loop turn are read with one query; reads run one at a time so alerts go out in
 * commit order. A failed read (database restarting) is retried with capped backoff for as
 * long as the daemon runs: the rows are still in the table, and later batches wait behind it so
 * order holds.
 */
export class Delivery {
  #pending: string[] = [];
  #chain: Promise<void> = Promise.resolve();
  #scheduled = false;
  #stopping = false;

  constructor(
    private readonly db: Db,
    private readonly hub: Hub,
    private readonly log: Logger,
  ) {}

  enqueue(txid: string): void {
    this.#pending.push(txid);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      const batch = this.#pending;
      this.#pending = [];
      this.#chain = this.#chain.then(() => this.#deliver(batch));
    });
  }

  /** Waits for reads in flight; a read that is failing is abandoned (its sockets are closing anyway). */
  async drain(): Promise<void> {
    this.#stopping = true;
    await this.#chain;
  }

  async #deliver(txids: string[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      // Nobody connected means nobody to deliver to; skip the read.
      if (this.hub.connections === 0 || this.#stopping) return;
      try {
        this.hub.deliver(await alertsByTxids(this.db, txids, this.hub.userIds()));
        return;
      } catch (err) {
        this.log.warn({ err: (err as Error).message, attempt, txids: txids.length }, 'reading alerts failed; retrying');
        await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** attempt)));
      }
    }
  }
}
