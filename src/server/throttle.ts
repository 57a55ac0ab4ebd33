/**
 * A log line that a client can cause (a bad token, a page of a foreign origin) is written at
 * most once per interval: 300 bad tokens must not become 300 lines. The next line written says
 * how many were left out meanwhile.
 */
export class LogThrottle {
  #last = -Infinity;
  #skipped = 0;

  constructor(private readonly everyMs: number) {}

  /** Calls `write` with how many calls were skipped since the last write, or skips this one. */
  run(write: (skipped: number) => void): void {
    const now = performance.now();
    if (now - this.#last < this.everyMs) {
      this.#skipped++;
      return;
    }
    this.#last = now;
    const skipped = this.#skipped;
    this.#skipped = 0;
    write(skipped);
  }
}

/** " (N more like it since the last line)", or nothing. */
export function skippedNote(skipped: number): string {
  return skipped > 0 ? ` (${skipped} more like it since the last such line)` : '';
}
