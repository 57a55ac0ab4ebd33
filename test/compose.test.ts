/**
 * docker-compose.yml and the Dockerfile cannot be run here (no Docker engine), so they are
 * checked against what they drive: Debian's docker-compose validates the file without an engine,
 * every pgbell command exists, every variable it sets is one pgbell reads, published ports match
 * PORT/DEMO_PORT, healthchecks probe the right port, dependencies exist, and every path the
 * Dockerfile copies is in the tree. The demo service is also run as its container would run it,
 * as far as this machine allows: as the image's user, in a copy of the image's folders.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { HELP } from '../src/cli/cli.js';
import { CONFIG_KEYS, loadConfig } from '../src/config.js';
import { freePort } from '../src/cli/embedded.js';
import { freshDatabase } from './helpers/pg.js';

const compose = parse(readFileSync(new URL('../docker-compose.yml', import.meta.url), 'utf8'), { merge: true }) as {
  services: Record<string, { image?: string; command?: string; environment?: Record<string, string>; ports?: string[]; depends_on?: Record<string, unknown>; healthcheck?: { test: string[] }; working_dir?: string }>;
};
const commands = [...HELP.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]);
const pgbellServices = Object.entries(compose.services).filter(([, s]) => s.command?.includes('bin/pgbell.js'));

const execFileP = promisify(execFile);
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
    // [host address:]host port:container port
    const published = (s.ports ?? []).map((p) => Number(p.split(':').at(-1)));
    if (s.command!.includes(' start') || s.command!.includes(' dev')) expect(published).toContain(config.PORT);
    if (s.command!.includes(' dev')) expect(published).toContain(config.DEMO_PORT);
    if (s.healthcheck) expect(s.healthcheck.test.join(' ')).toContain(`127.0.0.1:${config.PORT}/health`);
    for (const dep of Object.keys(s.depends_on ?? {})) expect(Object.keys(compose.services)).toContain(dep);
    if (env.DATABASE_URL) expect(new URL(env.DATABASE_URL).hostname).toBe('postgres');
  });
});

describe('the demo service', () => {
  const demo = compose.services.demo!;

  it('listens on every interface inside its container, and is published on this machine\'s loopback only (its /api/token signs for anyone)', () => {
    expect(loadConfig(demo.environment ?? {}).HOST).toBe('0.0.0.0');
    for (const p of demo.ports ?? []) expect(p).toMatch(/^127\.0\.0\.1:/);
  });

  // The image's user: node (uid and gid 1000 in the node images, home /home/node, its own).
  const NODE = { uid: 1000, gid: 1000, home: '/home/node' };
  const asRoot = process.getuid?.() === 0;
  if (!asRoot) console.warn('the demo container simulation is skipped: it runs as root (to act as the image\'s user)');

  it.skipIf(!asRoot)('starts as the image\'s user in the image\'s folders: its state where that user may write, reachable where the published ports arrive', async () => {
    const dockerfile = readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8');
    const final = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    expect(final).toMatch(/^USER node$/m);
    const workdir = final.match(/^WORKDIR (\S+)$/m)?.[1] ?? dockerfile.match(/^WORKDIR (\S+)$/m)![1]!;
    const imageEnv = Object.fromEntries([...final.matchAll(/^ENV (.+)$/gm)].flatMap((m) => m[1]!.split(/\s+/).map((kv) => kv.split('=') as [string, string])));
    // The container's file system: the work dir as WORKDIR makes it (root's, 0755) with what
    // the final stage copies there, and the user's home.
    const root = await mkdtemp(path.join(os.tmpdir(), 'pgbell-container-'));
    const inside = (p: string) => path.join(root, p);
    const repo = fileURLToPath(new URL('..', import.meta.url));
    try {
      await mkdir(inside(workdir), { recursive: true, mode: 0o755 });
      // A checkout the image's user cannot enter (root's 0700 home, a mktemp folder) is
      // hard-linked in (links need no rights on the folders above); otherwise symlinked.
      const reachable = ancestorsOpenTo(repo, NODE.uid);
      for (const [, from] of final.matchAll(/^COPY (?:--from=\S+ )?(\S+) \S+$/gm)) {
        const name = path.basename(from!);
        if (reachable) await symlink(path.join(repo, name), inside(path.join(workdir, name)));
        else await execFileP('cp', ['-al', path.join(repo, name), inside(path.join(workdir, name))]).catch(() => execFileP('cp', ['-a', path.join(repo, name), inside(path.join(workdir, name))]));
      }
      await mkdir(inside(NODE.home), { recursive: true, mode: 0o755 });
      await chown(inside(NODE.home), NODE.uid, NODE.gid);
      for (const d of [root, inside('home')]) await chmod(d, 0o755);

      const [program, ...args] = demo.command!.split(' ');
      expect(program).toBe('node');
      const port = await freePort();
      const demoPort = await freePort();
      const env = { ...imageEnv, ...demo.environment, DATABASE_URL: await freshDatabase(), PORT: String(port), DEMO_PORT: String(demoPort), PATH: process.env.PATH, HOME: inside(NODE.home) };
      const child = spawn(process.execPath, args.map((a) => (a.startsWith('/') ? inside(a) : a)), { cwd: inside(demo.working_dir ?? workdir), env, uid: NODE.uid, gid: NODE.gid, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
      try {
        await Promise.race([
          (async () => {
            while (!out.includes('pgbell is running.')) await new Promise((r) => setTimeout(r, 100));
          })(),
          exited.then(() => {
            throw new Error(`the demo exited before it was running:\n${out}`);
          }),
          new Promise((_, reject) => setTimeout(() => reject(new Error(`the demo did not start within 30 s:\n${out}`)), 30_000)),
        ]);
        expect(out).toMatch(/Listening: +0\.0\.0\.0 \(set by HOST\)/);
        expect(existsSync(inside(path.join(demo.working_dir ?? workdir, '.pgbell', 'dev.json')))).toBe(true);
        // Published ports arrive on the container's own interface, not on 127.0.0.1: this
        // machine's own interface stands in, or without one 127.0.0.2 (which a socket bound to
        // 127.0.0.1 does not answer).
        const external = Object.values(os.networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address ?? '127.0.0.2';
        for (const host of ['127.0.0.1', external]) {
          expect((await fetch(`http://${host}:${port}/health`)).status, host).toBe(200);
          expect((await fetch(`http://${host}:${demoPort}/`)).status, host).toBe(200);
        }
      } finally {
        child.kill('SIGTERM');
        await exited;
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }, 60_000);
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

/** Whether `uid` may pass through every folder from / down to `dir` (as another user would). */
function ancestorsOpenTo(dir: string, uid: number): boolean {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const st = statSync(d);
    const bit = st.uid === uid ? 0o100 : 0o001;
    if ((st.mode & bit) === 0) return false;
    if (path.dirname(d) === d) return true;
  }
}
