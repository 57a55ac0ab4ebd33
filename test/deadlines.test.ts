/** Deadlines: one timer for many; each fires once, not before it is due, unless cancelled or moved. */
import { describe, expect, it } from 'vitest';
import { Deadlines } from '../src/server/deadlines.js';

interface Item {
  id: number;
  dueAt: number;
  slot: number;
}

describe('Deadlines', () => {
  it('fires each queued item once, at or after its due time and in due order; cancelled ones never, moved ones at their new time', async () => {
    const fired: Array<{ id: number; at: number; due: number }> = [];
    const d = new Deadlines<Item>((item) => fired.push({ id: item.id, at: Date.now(), due: item.dueAt }));
    const items = Array.from({ length: 600 }, (_, id) => ({ id, dueAt: 0, slot: -1 }));
    const start = Date.now();
    let seed = 7;
    const r = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (const item of items) d.set(item, start + 20 + Math.floor(r() * 300));
    const cancelled = new Set<number>();
    const moved = new Map<number, number>();
    for (const item of items) {
      const x = r();
      if (x < 0.2) {
        d.cancel(item);
        cancelled.add(item.id);
      } else if (x < 0.4) {
        const at = start + 20 + Math.floor(r() * 300);
        d.set(item, at);
        moved.set(item.id, at);
      }
    }
    expect(d.size).toBe(600 - cancelled.size);
    await new Promise((r) => setTimeout(r, 500));
    expect(fired.map((f) => f.id).sort((a, b) => a - b)).toEqual(items.filter((i) => !cancelled.has(i.id)).map((i) => i.id));
    for (const f of fired) {
      expect(f.at).toBeGreaterThanOrEqual(f.due);
      if (moved.has(f.id)) expect(f.due).toBe(moved.get(f.id));
    }
    for (let i = 1; i < fired.length; i++) expect(fired[i]!.due).toBeGreaterThanOrEqual(fired[i - 1]!.due);
    expect(d.size).toBe(0);
  });

  it('an item fired can queue itself again (a warning, then the close), and clear() drops everything', async () => {
    const log: string[] = [];
    const item = { dueAt: 0, slot: -1, stage: 'warn' };
    const d = new Deadlines<typeof item>((it) => {
      log.push(it.stage);
      if (it.stage === 'warn') {
        it.stage = 'close';
        d.set(it, Date.now() + 20);
      }
    });
    d.set(item, Date.now() + 10);
    await new Promise((r) => setTimeout(r, 100));
    expect(log).toEqual(['warn', 'close']);
    const other = { dueAt: 0, slot: -1, stage: 'warn' };
    d.set(other, Date.now() + 10);
    d.clear();
    await new Promise((r) => setTimeout(r, 50));
    expect(log).toEqual(['warn', 'close']);
    expect(other.slot).toBe(-1);
  });
});
