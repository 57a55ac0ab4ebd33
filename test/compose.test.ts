/**
 * docker-compose.yml and the Dockerfile cannot be run here (no Docker engine), so they are
 * checked against what they drive: Debian's docker-compose validates the file without an engine,
 * every pgbell command exists, every variable it sets is one pgbell reads, published ports match
 * PORT/DEMO_PORT, healthchecks probe the right port, dependencies exist, and every path the
 * Dockerfile copies is in the tree.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { HELP } from '../src/cli.js';
import { CONFIG_KEYS, loadConfig } from '../src/config.js';

const compose = parse(readFileSync(new URL('../docker-compose.yml', import.meta.url), 'utf8'), { merge: true }) as {
  services: Record<string, { image?: string; command?: string; environment?: Record<string, string>; ports?: string[]; depends_on?: Record<string, unknown>; healthcheck?: { test: string[] } }>;
};
const commands = [...HELP.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]);
const pgbellServices = Object.entries(compose.services).filter(([, s]) => s.command?.includes('bin/pgbell.js'));

const haveCompose = await promisify(execFile)('docker-compose', ['version']).then(() => true, () => false);
if (!haveCompose) {
  if (process.env.PGBELL_REQUIRE_COMPOSE === '1') throw new Error('PGBELL_REQUIRE_COMPOSE=1 but docker-compose is not installed (apt-get install docker-compose)');
  console.warn('docker-compose config check skipped: docker-compose is not installed (apt-get install docker-compose)');
}

describe('docker-compose.yml', () => {
  it.skipIf(!haveCompose)('is valid for docker-compose (`docker-compose config`, no engine needed)', async () => {
    const { stdout } = await promisify(execFile)('docker-compose', ['-f', 'docker-compose.yml', 'config'], { env: { PATH: process.env.PATH } });
    expect(stdout).toMatch(/wal_level=logical/);
    expect(stdout).toMatch(/pgbell-1:/);
  });

  it('builds the pgbell services from the Dockerfile; Postgres runs with wal_level=logical', () => {
    for (const [name, s] of pgbellServices) expect((s as { build?: string }).build, name).toBe('.');
    expect(JSON.stringify((compose.services.postgres as { command?: unknown }).command)).toContain('wal_level=logical');
  });

  it('runs Postgres 17, Redis, and at least two pgbell nodes with healthchecks, fanning out through that Redis', () => {
    expect(compose.services.postgres!.image).toBe('postgres:17');
    expect(compose.services.redis!.image).toMatch(/^redis:/);
    for (const [, s] of pgbellServices.filter(([, s]) => s.command!.includes('pgbell.js start'))) {
      expect(s.environment).toMatchObject({ PGBELL_FANOUT: 'redis', REDIS_URL: 'redis://redis:6379' });
      expect(Object.keys(s.depends_on ?? {})).toContain('redis');
    }
    const nodes = pgbellServices.filter(([, s]) => s.command!.includes('pgbell.js start'));
    expect(nodes.length).toBeGreaterThanOrEqual(2);
    for (const s of Object.values(compose.services)) if (s.command?.includes('pgbell.js start')) expect(s.healthcheck).toBeDefined();
  });

  it.each(pgbellServices)('%s: its commands exist, its variables are pgbell\'s and valid, its ports and healthcheck match', (_name, s) => {
    for (const [, cmd] of s.command!.matchAll(/bin\/pgbell\.js ([a-z]+)/g)) expect(commands).toContain(cmd);
    const env = s.environment ?? {};
    for (const key of Object.keys(env)) expect(CONFIG_KEYS).toContain(key);
    expect(() => loadConfig(env)).not.toThrow();
    const config = loadConfig(env);
    const published = (s.ports ?? []).map((p) => Number(p.split(':')[1]));
    if (s.command!.includes(' start') || s.command!.includes(' dev')) expect(published).toContain(config.PORT);
    if (s.command!.includes(' dev')) expect(published).toContain(config.DEMO_PORT);
    if (s.healthcheck) expect(s.healthcheck.test.join(' ')).toContain(`127.0.0.1:${config.PORT}/health`);
    for (const dep of Object.keys(s.depends_on ?? {})) expect(Object.keys(compose.services)).toContain(dep);
    if (env.DATABASE_URL) expect(new URL(env.DATABASE_URL).hostname).toBe('postgres');
  });
});

describe('Dockerfile', () => {
  const text = readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8');
  const lines = text.split('\n').filter((l) => !l.startsWith('#'));

  it('copies only paths that exist in the tree', () => {
    const copies = lines.filter((l) => /^COPY /.test(l) && !l.includes('--from='));
    expect(copies.length).toBeGreaterThan(3);
    for (const l of copies) {
      const parts = l.trim().split(/\s+/).slice(1, -1);
      for (const p of parts) expect(existsSync(new URL(`../${p}`, import.meta.url)), `${p} (${l.trim()})`).toBe(true);
    }
  });

  it('is multi-stage, installs production dependencies only, runs as a non-root user, and checks /health', () => {
    expect(lines.filter((l) => /^FROM /.test(l)).length).toBeGreaterThanOrEqual(2);
    expect(text).toMatch(/npm ci --omit=dev/);
    expect(text).toMatch(/^USER node$/m);
    expect(text).toMatch(/^HEALTHCHECK .*\n?.*\/health/m);
    expect(text).toMatch(/CMD \["node", "bin\/pgbell\.js", "start"\]/);
    // What `pgbell start` needs at run time is in the final stage.
    const final = text.slice(text.lastIndexOf('\nFROM '));
    for (const p of ['dist', 'bin', 'sql', 'node_modules', 'package.json']) expect(final).toContain(p);
  });
});
