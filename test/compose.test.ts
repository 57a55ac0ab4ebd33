/**
 * docker-compose.yml cannot be run here (no Docker engine), so it is checked against what it
 * drives: every pgbell command exists, every variable it sets is one pgbell reads, published
 * ports match PORT/DEMO_PORT, healthchecks probe the right port, dependencies exist.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { HELP } from '../src/cli.js';
import { CONFIG_KEYS, loadConfig } from '../src/config.js';

const compose = parse(readFileSync(new URL('../docker-compose.yml', import.meta.url), 'utf8'), { merge: true }) as {
  services: Record<string, { image?: string; command?: string; environment?: Record<string, string>; ports?: string[]; depends_on?: Record<string, unknown>; healthcheck?: { test: string[] } }>;
};
const commands = [...HELP.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]);
const pgbellServices = Object.entries(compose.services).filter(([, s]) => s.command?.includes('bin/pgbell.js'));

describe('docker-compose.yml', () => {
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
