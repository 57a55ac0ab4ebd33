/**
 * src/ keeps its shape (docs/architecture.md): each folder is a stage of the data path, and a
 * stage imports only the stages below it. An import that runs upward, or any import cycle, fails
 * here, with the file and the import named. So does a file over 400 lines whose header does not
 * say why it is long.
 *
 * The graph is TypeScript's own reading of each file's imports (ts.preProcessFile), type-only
 * imports included: a cycle through types still ties two files together.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve('src');

/**
 * What each stage may import, besides itself. `base` is the shared floor: config (the one reader
 * of env), errors and close codes, the wire protocol, logging, metrics, session tokens, doctor's
 * line type, and util/.
 */
const MAY_IMPORT: Record<string, string[]> = {
  base: [],
  db: ['base'],
  sources: ['base', 'db'],
  fanout: ['base', 'db', 'sources'],
  delivery: ['base', 'db'],
  server: ['base', 'db', 'delivery'],
  daemon: ['base', 'db', 'sources', 'fanout', 'delivery', 'server'],
  demo: ['base', 'db', 'server'],
  cli: ['base', 'db', 'sources', 'fanout', 'delivery', 'server', 'daemon', 'demo'],
  // The browser's side: it may not pull in Node code, only the wire's definitions.
  client: ['wire'],
  react: ['wire', 'client'],
  api: ['base', 'db', 'sources', 'fanout', 'delivery', 'server', 'daemon'],
};

/** Files of `base` a browser may import too: they use no Node API. */
const WIRE = new Set(['protocol.ts', 'errors.ts']);

function stageOf(file: string): string {
  const rel = path.relative(SRC, file);
  const parts = rel.split(path.sep);
  if (parts.length === 1) return rel === 'index.ts' ? 'api' : 'base';
  if (parts[0] === 'util') return 'base';
  if (!(parts[0]! in MAY_IMPORT)) throw new Error(`src/${parts[0]}/ is not a stage: add it to MAY_IMPORT (and docs/architecture.md)`);
  return parts[0]!;
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return /\.tsx?$/.test(name) ? [p] : [];
  });
}

function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return info.importedFiles
    .map((i) => i.fileName)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => {
      const target = path.resolve(path.dirname(file), spec).replace(/\.js$/, '');
      for (const ext of ['.ts', '.tsx', '/index.ts']) {
        const candidate = target + ext;
        try {
          if (statSync(candidate).isFile()) return candidate;
        } catch {
          // not this one
        }
      }
      throw new Error(`${path.relative('.', file)} imports ${spec}, which does not resolve`);
    });
}

const files = sources(SRC);
const graph = new Map(files.map((f) => [f, importsOf(f)]));
const rel = (f: string) => path.relative('.', f);

function upward(g: Map<string, string[]>): string[] {
  const wrong: string[] = [];
  for (const [from, targets] of g) {
    const stage = stageOf(from);
    for (const to of targets) {
      const target = stageOf(to);
      if (target === stage) continue;
      const allowed = MAY_IMPORT[stage]!;
      const wire = allowed.includes('wire') && target === 'base' && path.dirname(to) === SRC && WIRE.has(path.basename(to));
      if (!allowed.includes(target) && !wire) wrong.push(`${rel(from)} (${stage}) imports ${rel(to)} (${target})`);
    }
  }
  return wrong;
}

function cyclesOf(g: Map<string, string[]>): string[] {
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    stack.push(f);
    for (const to of g.get(f) ?? []) {
      if (state.get(to) === 'open') cycles.push([...stack.slice(stack.indexOf(to)), to].map(rel).join(' → '));
      else if (!state.has(to)) visit(to);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of g.keys()) if (!state.has(f)) visit(f);
  return cycles;
}

describe('the shape of src/', () => {
  it('every import runs down the data path, never up it', () => {
    expect(upward(graph)).toEqual([]);
  });

  it('has no import cycle', () => {
    expect(cyclesOf(graph)).toEqual([]);
  });

  it('a file over 400 lines says in its header why it is long', () => {
    const long = files
      .filter((f) => readFileSync(f, 'utf8').split('\n').length > 400)
      .filter((f) => !/^\s*\*\s*Why one file:/m.test(readFileSync(f, 'utf8').split('*/')[0]!))
      .map((f) => `${rel(f)}: ${readFileSync(f, 'utf8').split('\n').length} lines`);
    expect(long).toEqual([]);
  });

  it('the checks catch an upward import, a browser import of Node code, and a cycle', () => {
    const f = (p: string) => path.join(SRC, p);
    const bad = new Map([
      [f('delivery/hub.ts'), [f('server/sse.ts'), f('delivery/stash.ts')]],
      [f('client/index.ts'), [f('config.ts'), f('protocol.ts')]],
      [f('delivery/stash.ts'), [f('delivery/hub.ts')]],
    ]);
    expect(upward(bad)).toEqual(['src/delivery/hub.ts (delivery) imports src/server/sse.ts (server)', 'src/client/index.ts (client) imports src/config.ts (base)']);
    expect(cyclesOf(bad)).toEqual(['src/delivery/hub.ts → src/delivery/stash.ts → src/delivery/hub.ts']);
    expect(() => stageOf(f('nowhere/x.ts'))).toThrow(/not a stage/);
  });
});
