/**
 * What the docs say about performance stays what was measured: docs/benchmarks.md is what the
 * report generator makes of docs/benchmarks.json (its tables) and test/bench/notes.md (their
 * reading), and every figure in that reading and in docs/performance.md is either in the latest
 * report's tables or stands in a paragraph, list item or table that carries its date.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { reportMarkdown, type Report } from './bench/report.js';

const report = JSON.parse(readFileSync('docs/benchmarks.json', 'utf8')) as Report;
const notes = readFileSync('test/bench/notes.md', 'utf8');

/** Every number in `text`, commas dropped. */
const numbers = (text: string) => [...text.matchAll(/\d[\d,]*(?:\.\d+)?/g)].map((m) => Number(m[0].replace(/,/g, '')));

const markdown = await reportMarkdown(report);
/** The report's own part: its tables, before the reading. */
const measured = numbers(markdown.slice(0, -notes.length));

/**
 * Measured figures: a number with a unit (ms, s, µs, ×, KiB, KB, MiB, %, /s), a thousands `k`,
 * or decimals. Plain counts (10,000 sockets, 2 cores) are the setting, not the result.
 */
function figures(text: string): Array<{ shown: string; value: number; tolerance: number }> {
  const out: Array<{ shown: string; value: number; tolerance: number }> = [];
  for (const m of text.matchAll(/(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?:(k)(?=\/s|[^\w]|$)|\s?(ms|µs|s|×|KiB|KB|MiB|%|\/s)(?!\w))?/g)) {
    const [shown, whole, decimals, k, unit] = m;
    if (!decimals && !k && !unit) continue;
    const scale = k ? 1000 : 1;
    out.push({ shown, value: Number(`${whole!.replace(/,/g, '')}.${decimals ?? '0'}`) * scale, tolerance: (0.5 * scale) / 10 ** (decimals?.length ?? 0) + 1e-9 });
  }
  return out;
}

/**
 * Prose blocks (paragraphs, list items, tables) with code, links' targets and headings left out.
 * A table counts as dated when the paragraph before or after it is.
 */
function blocks(markdown: string): Array<{ text: string; dated: boolean }> {
  const text = markdown
    .replace(/```[\s\S]*?```/g, '')
    .replace(/`[^`\n]*`/g, '')
    .replace(/\]\([^)]*\)/g, ']')
    .replace(/^#.*$/gm, '');
  const parts = text.split(/\n\s*\n|\n(?=- )/).map((t) => t.trim()).filter(Boolean);
  const date = (t: string | undefined) => t !== undefined && /\b20\d\d-\d\d-\d\d\b/.test(t);
  return parts.map((t, i) => ({ text: t, dated: date(t) || (t.startsWith('|') && (date(parts[i - 1]) || date(parts[i + 1]))) }));
}

describe('the performance docs', () => {
  it('docs/benchmarks.md is the report made from docs/benchmarks.json and test/bench/notes.md (`npm run bench -- --from-json docs/benchmarks.json --out docs`)', () => {
    expect(markdown).toBe(readFileSync('docs/benchmarks.md', 'utf8'));
  });

  it.each([['test/bench/notes.md (the reading in docs/benchmarks.md)', notes], ['docs/performance.md', readFileSync('docs/performance.md', 'utf8')]])(
    '%s: every figure is in the latest report, or carries its date',
    (_file, text) => {
      const stale: string[] = [];
      for (const b of blocks(text)) {
        if (b.dated) continue;
        for (const f of figures(b.text)) {
          if (!measured.some((n) => Math.abs(n - f.value) <= f.tolerance)) stale.push(`${f.shown} in "${b.text.slice(0, 80)}…"`);
        }
      }
      expect(stale).toEqual([]);
    },
  );

  it('finds figures, and stale ones', () => {
    expect(figures('3.75 / 43 ms, 11.6k/s, 0.43, 2.9×, 10,000 sockets, 2 cores').map((f) => f.shown)).toEqual(['3.75', '43 ms', '11.6k', '0.43', '2.9×']);
    const f = figures('0.43 and 22.3k')!;
    expect(f.map((x) => measured.some((n) => Math.abs(n - x.value) <= x.tolerance))).toEqual([true, true]);
    expect(figures('0.53').some((x) => measured.some((n) => Math.abs(n - x.value) <= x.tolerance))).toBe(false);
  });
});
