/**
 * Every relative link in README.md and docs/*.md resolves: the file exists, and a `#anchor`
 * names a heading of the target (GitHub's slugs). Every shell block parses (`bash -n`); the
 * README's Next.js block runs as written in test/nextjs.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { shellBlocks } from './helpers/markdown.js';

const root = path.resolve('.');
const files = ['README.md', 'CHANGELOG.md', ...readdirSync('docs').filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchors(file: string): Set<string> {
  const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '');
  return new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1]!)));
}

function links(file: string): string[] {
  const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((l) => !/^(https?:|mailto:)/.test(l));
}

describe('documentation links', () => {
  it.each(files)('%s: every relative link resolves', (file) => {
    const bad: string[] = [];
    for (const link of links(file)) {
      const [target, anchor] = link.split('#') as [string, string | undefined];
      const resolved = target === '' ? path.join(root, file) : path.resolve(path.dirname(path.join(root, file)), decodeURIComponent(target));
      if (!existsSync(resolved)) {
        bad.push(`${link}: no ${path.relative(root, resolved)}`);
        continue;
      }
      if (anchor && resolved.endsWith('.md') && !anchors(resolved).has(anchor)) bad.push(`${link}: no heading #${anchor} in ${path.relative(root, resolved)}`);
    }
    expect(bad).toEqual([]);
  });

  it('README stays a newcomer\'s page: the two commands, inserting an alert, adding it to an app, links to the reference', () => {
    const readme = readFileSync('README.md', 'utf8');
    for (const h of ['## Two commands', '## Inserting alerts', '## Running against your own database', '## Adding it to a Next.js app', '## Documentation']) expect(readme).toContain(h);
    expect(readme.split('\n').length).toBeLessThan(250);
    for (const doc of ['protocol', 'configuration', 'operations', 'guarantees', 'performance', 'testing']) expect(readme).toContain(`docs/${doc}.md`);
  });

  const blocks = [...files, ...readdirSync('examples').map((e) => `examples/${e}/README.md`).filter((f) => existsSync(f))].flatMap(shellBlocks);
  it.each(blocks.map((b) => [`${b.file}:${b.line} (${b.heading || 'top'})`, b.text]))('%s: the shell block parses', (_where, text) => {
    expect(() => execFileSync('bash', ['-n'], { input: text, stdio: ['pipe', 'pipe', 'pipe'] })).not.toThrow();
  });
});
