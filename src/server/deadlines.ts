/**
 * Many deadlines, one timer. Every authenticated socket has two (its token's `token_expiring`
 * warning, then its 4401 close); a Node timer each cost an idle socket about 400 bytes with
 * their closures. Here a socket's deadline is two fields on its own record, kept in a binary
 * min-heap, and one timer is armed for the earliest.
 */

/** What can be queued: its due time (ms since the epoch) and its place in the heap (-1: none). */
export interface Timed {
  dueAt: number;
  slot: number;
}

/** The longest delay setTimeout takes; later deadlines are re-armed when it fires. */
const MAX_DELAY = 2 ** 31 - 1;

export class Deadlines<T extends Timed> {
  readonly #heap: T[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** The due time the timer is armed for; Infinity when it is not. */
  #armedFor = Infinity;
  #running = false;

  constructor(
    /** Called once per deadline reached; it may queue the item again. */
    private readonly fire: (item: T) => void,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.#heap.length;
  }

  /** Queues `item` for `at`, or moves it there if it was queued. */
  set(item: T, at: number): void {
    if (item.slot >= 0) this.#removeAt(item.slot);
    item.dueAt = at;
    item.slot = this.#heap.length;
    this.#heap.push(item);
    this.#up(item.slot);
    this.#arm();
  }

  cancel(item: T): void {
    if (item.slot < 0) return;
    this.#removeAt(item.slot);
    this.#arm();
  }

  /** Drops every deadline and the timer (shutdown). */
  clear(): void {
    for (const item of this.#heap) item.slot = -1;
    this.#heap.length = 0;
    clearTimeout(this.#timer);
    this.#armedFor = Infinity;
  }

  #arm(): void {
    if (this.#running) return;
    const top = this.#heap[0];
    if (top === undefined) {
      clearTimeout(this.#timer);
      this.#armedFor = Infinity;
      return;
    }
    if (top.dueAt === this.#armedFor) return;
    clearTimeout(this.#timer);
    this.#armedFor = top.dueAt;
    this.#timer = setTimeout(() => this.#run(), Math.min(MAX_DELAY, Math.max(0, top.dueAt - this.now())));
    // Deadlines never keep the process alive by themselves.
    this.#timer.unref();
  }

  #run(): void {
    this.#armedFor = Infinity;
    this.#running = true;
    try {
      const now = this.now();
      while (this.#heap.length > 0 && this.#heap[0]!.dueAt <= now) {
        const item = this.#heap[0]!;
        this.#removeAt(0);
        this.fire(item);
      }
    } finally {
      this.#running = false;
      this.#arm();
    }
  }

  #removeAt(i: number): void {
    const h = this.#heap;
    const item = h[i]!;
    item.slot = -1;
    const last = h.pop()!;
    if (i === h.length) return;
    h[i] = last;
    last.slot = i;
    this.#up(i);
    this.#down(last.slot);
  }

  #up(i: number): void {
    const h = this.#heap;
    const item = h[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]!.dueAt <= item.dueAt) break;
      h[i] = h[p]!;
      h[i]!.slot = i;
      i = p;
    }
    h[i] = item;
    item.slot = i;
  }

  #down(i: number): void {
    const h = this.#heap;
    const item = h[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const c = l + 1 < h.length && h[l + 1]!.dueAt < h[l]!.dueAt ? l + 1 : l;
      if (h[c]!.dueAt >= item.dueAt) break;
      h[i] = h[c]!;
      h[i]!.slot = i;
      i = c;
    }
    h[i] = item;
    item.slot = i;
  }
}
