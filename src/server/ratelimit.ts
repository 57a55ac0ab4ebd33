/**
 * Fixed-window counters by key (a user id, a client address): what one user or one address
 * may ask of the read side per window. Windows start at a key's first request; keys whose
 * window ended are swept as the map grows, so an idle key costs nothing for long.
 */
export class WindowLimiter {
  readonly #windows = new Map<string, { start: number; n: number }>();
  #sweepAt = 1024;

  constructor(
    /** Requests allowed per window (0: no limit). */
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  /** Counts one request for `key`: false when the key is over its limit for this window. */
  take(key: string): boolean {
    if (this.limit <= 0) return true;
    const now = performance.now();
    let w = this.#windows.get(key);
    if (!w || now - w.start >= this.windowMs) {
      w = { start: now, n: 0 };
      this.#windows.set(key, w);
      if (this.#windows.size >= this.#sweepAt) this.#sweep(now);
    }
    w.n++;
    return w.n <= this.limit;
  }

  /** Seconds until `key`'s window ends (for Retry-After). */
  retryAfter(key: string): number {
    const w = this.#windows.get(key);
    return w ? Math.max(1, Math.ceil((this.windowMs - (performance.now() - w.start)) / 1000)) : 1;
  }

  #sweep(now: number): void {
    for (const [k, w] of this.#windows) if (now - w.start >= this.windowMs) this.#windows.delete(k);
    this.#sweepAt = Math.max(1024, this.#windows.size * 2);
  }
}
