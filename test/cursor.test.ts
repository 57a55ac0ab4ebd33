/**
 * CursorState against a plain model: every id below the horizon is seen, plus the ids added at
 * or above it (the oldest forgotten past MAX_MEMORY_IDS), over random sequences of adds and
 * advances in and out of order; and the wire form decodes to what it was.
 */
import { describe, expect, it } from 'vitest';
import { CursorState, decodeCursor, MAX_CURSOR_IDS, MAX_MEMORY_IDS } from '../src/delivery/cursor.js';
import { seeded } from './helpers/random.js';

class Model {
  ids: bigint[] = [];
  constructor(public horizon: bigint) {}
  has(t: bigint) {
    return t < this.horizon || this.ids.includes(t);
  }
  add(t: bigint) {
    if (t < this.horizon || this.ids.includes(t)) return;
    this.ids.push(t);
    this.ids.sort((a, b) => (a < b ? -1 : 1));
    if (this.ids.length > MAX_MEMORY_IDS) this.ids.shift();
  }
  advance(h: bigint) {
    if (h <= this.horizon) return;
    this.horizon = h;
    this.ids = this.ids.filter((t) => t >= h);
  }
}

describe('CursorState', () => {
  for (const seed of [1, 2, 3, 42, 20261207]) {
    it(`matches the model over 2,000 random steps (seed ${seed})`, () => {
      const r = seeded(seed);
      const start = BigInt(Math.floor(r() * 1000));
      const c = new CursorState(start);
      const m = new Model(start);
      let top = start;
      for (let step = 0; step < 2000; step++) {
        const x = r();
        if (x < 0.6) {
          // Mostly ascending, sometimes an older transaction committing late.
          const t = r() < 0.8 ? (top += BigInt(1 + Math.floor(r() * 3))) : top - BigInt(Math.floor(r() * 50));
          c.add(t);
          m.add(t);
        } else if (x < 0.7) {
          const h = m.horizon + BigInt(Math.floor(r() * 40)) - 5n;
          c.advance(h);
          m.advance(h);
        } else if (x < 0.72) {
          // A burst past the in-memory bound.
          for (let i = 0; i < MAX_MEMORY_IDS / 4; i++) {
            top += 1n;
            c.add(top);
            m.add(top);
          }
        }
        const probe = top - BigInt(Math.floor(r() * 80));
        expect(c.has(probe)).toBe(m.has(probe));
        expect(c.horizon).toBe(m.horizon);
        expect(c.ids).toEqual(m.ids);
        expect(c.size).toBe(m.ids.length);
      }
    });
  }

  it('encodes the horizon and the newest MAX_CURSOR_IDS ids; decoding gives them back', () => {
    const c = new CursorState(1000n);
    for (let t = 1001n; t < 1001n + BigInt(MAX_CURSOR_IDS) + 10n; t += 1n) c.add(t * 2n);
    const d = decodeCursor(c.encode('abc-def-1'));
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(d.epoch).toBe('abc-def-1');
    expect(d.cursor.horizon).toBe(1000n);
    expect(d.cursor.ids).toEqual(c.ids.slice(-MAX_CURSOR_IDS));
    // Adding an id it has changes nothing, and the encoding is cached until something does.
    const text = c.encode('abc-def-1');
    c.add(c.ids.at(-1)!);
    expect(c.encode('abc-def-1')).toBe(text);
    c.advance(c.ids.at(-1)! + 1n);
    expect(c.size).toBe(0);
    expect(c.encode('abc-def-1')).not.toBe(text);
  });
});
