/** The CLI as users run it: a subprocess, real env, real exit codes. */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { SQL_DIR } from '../src/db/migrate.js';
import { freePort } from '../src/cli/embedded.js';
import { TestClient } from './helpers/client.js';
import { cleanEnv, launch, run } from './helpers/cli.js';
import { SECRET, tokenFor } from './helpers/daemon.js';
import { createUser, emptyDatabase, freshDatabase, psql, query } from './helpers/pg.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MIGRATIONS = readdirSync(SQL_DIR).filter((f) => f.endsWith('.sql')).length;

describe('pgbell --help', () => {
  it('lists commands, options, env vars and examples', async () => {
    const r = await run(['--help'], cleanEnv());
    expect(r.code).toBe(0);
    for (const word of ['start', 'migrate', 'token <userId>', 'send <email>', 'dev', '--ttl', 'DATABASE_URL', 'SESSION_SECRET', 'PORT', 'HOST', 'HEARTBEAT_MS', 'AUTH_TIMEOUT_MS', 'PGBELL_CHANNEL', 'LOG_LEVEL', 'Examples:']) {
      expect(r.stdout).toContain(word);
    }
  });

  it('`npx pgbell` runs the checkout\'s own bin', async () => {
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn('npx', ['--offline', 'pgbell', '--help'], { cwd: ROOT, env: cleanEnv() });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.on('close', (code) => resolve({ code, out }));
    });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^pgbell — live notifications/);
  });

  it('an unknown command or option is a one-line error, exit 1', async () => {
    const r = await run(['frobnicate'], cleanEnv());
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('pgbell: unknown command "frobnicate"; run `pgbell --help` for the list');
    const o = await run(['start', '--bogus'], cleanEnv());
    expect(o.code).toBe(1);
    expect(o.stderr).toMatch(/^pgbell: Unknown option '--bogus'/);
  });
});

describe('config errors', () => {
  it.each([
    [{ PORT: 'abc' }, 'pgbell: PORT must be a whole number between 0 and 65535 (got "abc")'],
    [{ SESSION_SECRET: 'x' }, 'pgbell: SESSION_SECRET must be at least 32 characters (it is the HS256 key that signs session tokens) (got "***")'],
    [{}, 'pgbell: DATABASE_URL is required for `pgbell start` (see `pgbell --help`)'],
    [{ DATABASE_URL: 'postgres://127.0.0.1:1/x' }, 'pgbell: SESSION_SECRET is required for `pgbell start` (see `pgbell --help`)'],
  ])('start with %o exits 1 with one line', async (env, line) => {
    const r = await run(['start'], cleanEnv(env));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(line + '\n');
  });
});

describe('pgbell migrate', () => {
  it('migrates an empty database, then reports it up to date', async () => {
    const url = await emptyDatabase();
    const first = await run(['migrate'], cleanEnv({ DATABASE_URL: url }));
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('applied 000001_schema.sql');
    expect(first.stdout).toContain(`migrated: ${MIGRATIONS + 1} applied, 0 already applied`); // and the bookkeeping step
    const second = await run(['migrate'], cleanEnv({ DATABASE_URL: url }));
    expect(second.stdout.trim()).toBe(`up to date (${MIGRATIONS} migrations already applied)`);
  });

  it('two `pgbell migrate` processes at once both succeed', async () => {
    const url = await emptyDatabase();
    const [a, b] = await Promise.all([run(['migrate'], cleanEnv({ DATABASE_URL: url })), run(['migrate'], cleanEnv({ DATABASE_URL: url }))]);
    expect([a.code, b.code]).toEqual([0, 0]);
    expect((await query(url, 'SELECT count(*)::int AS n FROM pgbell.pgbell_migrations'))[0]!.n).toBe(readdirSync(SQL_DIR).filter((f) => f.endsWith('.sql')).length);
  });
});

describe('pgbell token', () => {
  it('prints an HS256 token with sub, email and the requested lifetime', async () => {
    const r = await run(['token', 'user-7', '--email', 'u7@example.test', '--ttl', '2h'], cleanEnv({ SESSION_SECRET: SECRET }));
    expect(r.code).toBe(0);
    const { payload, protectedHeader } = await jwtVerify(r.stdout.trim(), new TextEncoder().encode(SECRET));
    expect(protectedHeader.alg).toBe('HS256');
    expect(payload).toMatchObject({ sub: 'user-7', email: 'u7@example.test' });
    expect(payload.exp! - payload.iat!).toBe(7200);
  });

  it('a bad --ttl or a missing user id is a clear error', async () => {
    expect((await run(['token', 'u', '--ttl', 'forever'], cleanEnv({ SESSION_SECRET: SECRET }))).stderr).toContain('--ttl "forever" is not a duration');
    expect((await run(['token'], cleanEnv({ SESSION_SECRET: SECRET }))).stderr).toContain('usage: pgbell token <userId>');
  });
});

describe('pgbell send', () => {
  it('inserts 3 alerts for a known email; an unknown email exits 1', async () => {
    const url = await freshDatabase();
    await createUser(url, 'sam', 'sam@example.test');
    const ok = await run(['send', 'sam@example.test'], cleanEnv({ DATABASE_URL: url }));
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^inserted 3 alerts for sam@example.test \(user sam\)/);
    expect((await query(url, `SELECT count(*)::int AS n FROM "Alert" WHERE "userId" = 'sam'`))[0]!.n).toBe(3);

    const bad = await run(['send', 'nobody@example.test'], cleanEnv({ DATABASE_URL: url }));
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe('pgbell: no user with email nobody@example.test in "User"');
  });
});

describe('pgbell start', () => {
  it('serves alerts, then on SIGTERM closes sockets with 1001 and exits 0', async () => {
    const url = await freshDatabase();
    await createUser(url, 'sam', 'sam@example.test');
    const port = await freePort();
    // The per-alert and per-socket lines are debug (the info level gets a periodic summary).
    const p = launch(['start'], cleanEnv({ DATABASE_URL: url, SESSION_SECRET: SECRET, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'debug' }));
    await p.waitFor(/pgbell listening on/);
    const c = await TestClient.ready(`ws://127.0.0.1:${port}/`, await tokenFor('sam', { email: 'sam@example.test' }));
    const send = await run(['send', 'sam@example.test'], cleanEnv({ DATABASE_URL: url }));
    expect(send.code).toBe(0);
    expect((await c.count('notification', 3)).map((m) => m.alert.title)).toEqual(['Welcome to pgbell', 'Deployment finished', 'Storage almost full']);

    p.child.kill('SIGTERM');
    expect((await c.closed).code).toBe(1001);
    const r = await p.exited;
    expect(r.code).toBe(0);
    const logs = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l).msg);
    expect(logs).toEqual(expect.arrayContaining(['New WebSocket connection attempt', 'User sam (sam@example.test) authenticated via WebSocket', 'Broadcasted notification to user sam (1 connections)', 'SIGTERM received; shutting down', 'pgbell stopped']));
  });

  it('LOG_FORMAT=pretty gives human lines with time and level even when stdout is not a terminal', async () => {
    const url = await freshDatabase();
    const port = await freePort();
    const p = launch(['start'], cleanEnv({ DATABASE_URL: url, SESSION_SECRET: SECRET, PORT: String(port), HOST: '127.0.0.1', LOG_FORMAT: 'pretty' }));
    await p.waitFor(/\[\d\d:\d\d:\d\d\.\d{3}\] INFO: pgbell listening on ws:\/\/127\.0\.0\.1:\d+\//);
    p.child.kill('SIGTERM');
    const r = await p.exited;
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/^\{/m);

    const bad = await run(['start'], cleanEnv({ DATABASE_URL: url, SESSION_SECRET: SECRET, LOG_FORMAT: 'loud' }));
    expect(bad.stderr.trim()).toBe('pgbell: LOG_FORMAT must be pretty (human lines) or json (one JSON object per line) (got "loud")');
  });

  it('on an unmigrated database it says to run migrate, exit 1', async () => {
    const url = await emptyDatabase();
    const r = await run(['start'], cleanEnv({ DATABASE_URL: url, SESSION_SECRET: SECRET, PORT: '0' }));
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`pgbell: the database is missing migrations ${readdirSync(SQL_DIR).filter((f) => f.endsWith('.sql')).sort().join(', ')}, bookkeeping in schema pgbell: run \`pgbell migrate\` first`);
  });

  it('with an unreachable database it says so, exit 1', async () => {
    const port = await freePort();
    const r = await run(['start'], cleanEnv({ DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/x`, SESSION_SECRET: SECRET, PORT: '0' }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^pgbell: cannot connect to DATABASE_URL: .*ECONNREFUSED/);
  });

  it('with PORT already taken it says so, exit 1', async () => {
    const url = await freshDatabase();
    const port = await freePort();
    const a = launch(['start'], cleanEnv({ DATABASE_URL: url, SESSION_SECRET: SECRET, PORT: String(port), HOST: '127.0.0.1' }));
    await a.waitFor(/pgbell listening on/);
    const b = await run(['start'], cleanEnv({ DATABASE_URL: url, SESSION_SECRET: SECRET, PORT: String(port), HOST: '127.0.0.1' }));
    expect(b.code).toBe(1);
    expect(b.stderr.trim()).toBe(`pgbell: PORT ${port} is already in use; set PORT to a free port`);
    a.child.kill('SIGTERM');
    expect((await a.exited).code).toBe(0);
  });

  it('psql INSERT reaches a client of the subprocess daemon', async () => {
    const url = await freshDatabase();
    await createUser(url, 'pat');
    const port = await freePort();
    const p = launch(['start'], cleanEnv({ DATABASE_URL: url, SESSION_SECRET: SECRET, PORT: String(port), HOST: '127.0.0.1' }));
    await p.waitFor(/pgbell listening on/);
    const c = await TestClient.ready(`ws://127.0.0.1:${port}/ws`, await tokenFor('pat'));
    await psql(url, `INSERT INTO "Alert" ("userId", title) VALUES ('pat', 'from psql')`);
    expect((await c.next((m) => m.type === 'notification')).alert.title).toBe('from psql');
    p.child.kill('SIGINT');
    expect((await p.exited).code).toBe(0);
  });
});

describe('pgbell doctor', () => {
  it('all checks pass on a migrated database (exit 0); each problem is named with its fix (exit 1)', async () => {
    const good = await freshDatabase();
    const ok = await run(['doctor'], cleanEnv({ DATABASE_URL: good }));
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('✓ migrations: all applied');
    expect(ok.stdout).toContain('✓ triggers: notify channel "pgbell"');
    expect(ok.stdout).toContain('✓ LISTEN round trip: a NOTIFY sent on DATABASE_URL arrived on the listener connection');
    expect(ok.stdout.trim().split('\n').at(-1)).toBe('all checks passed');

    const empty = await emptyDatabase();
    const bad = await run(['doctor'], cleanEnv({ DATABASE_URL: empty }));
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/✗ migrations: missing 000001_schema\.sql.*: run `pgbell migrate`/);

    const deaf = await run(['doctor'], cleanEnv({ DATABASE_URL: good, LISTEN_DATABASE_URL: empty }));
    expect(deaf.code).toBe(1);
    expect(deaf.stdout).toContain('✗ LISTEN round trip: nothing arrived within 3 s: LISTEN_DATABASE_URL goes through a transaction-mode pooler');

    const channel = await run(['doctor'], cleanEnv({ DATABASE_URL: good, PGBELL_CHANNEL: 'other' }));
    expect(channel.stdout).toContain('✗ triggers: notify channel "pgbell" but PGBELL_CHANNEL is "other"');
  }, 30_000);
});
