/**
 * Retrying a read or write that a restarting database fails for a while: capped exponential
 * backoff (100 ms · 2^attempt, at most 5 s), for as long as the caller still wants it. Used by
 * delivery and by the Redis relay, whose later steps wait behind the one retrying (order holds).
 */
import type { Logger } from '../log.js';

export interface RetryOptions {
  log: Logger;
  /** Checked before each attempt: true gives up with undefined (the daemon stops, the relay stood down). */
  stopped: () => boolean;
  /**
   * An error no retry can cure (SQLSTATE class 22, data exception: a transaction id out of
   * range in a hand-made NOTIFY) ends it with undefined instead of stalling every later step.
   */
  giveUpOnBadInput?: boolean;
}

export async function retry<T>(what: string, fn: () => Promise<T>, opts: RetryOptions): Promise<T | undefined> {
  for (let attempt = 0; ; attempt++) {
    if (opts.stopped()) return undefined;
    try {
      return await fn();
    } catch (err) {
      if (opts.giveUpOnBadInput && String((err as { code?: unknown }).code ?? '').startsWith('22')) {
        opts.log.error({ err: (err as Error).message }, `${what} failed on its input; skipped`);
        return undefined;
      }
      opts.log.warn({ err: (err as Error).message, attempt }, `${what} failed; retrying`);
      await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** attempt)));
    }
  }
}
