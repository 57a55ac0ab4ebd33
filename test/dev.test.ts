/**
 * `npm start` = `pgbell dev` on a machine with nothing installed: embedded Postgres, migrate,
 * demo user, daemon, and a printed token + psql command that work as printed.
 */
import { execFile, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { EmbeddedPostgresError, freePort, startEmbeddedPostgres } from '../src/cli/embedded.js';
import { TestClient } from './helpers/client.js';
import { cleanEnv, launch } from './helpers/cli.js';
import { emptyDatabase, query } from './helpers/pg.js';

const sh = promisify(execFile);
const dirs: string[] = [];

afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function startDev(cwd: string, env: Record<string, string> = {}, as?: { uid: number; gid: number }) {
  const port = await freePort();
  const p = launch(['dev'], cleanEnv({ PORT: String(port), DEMO_PORT: '0', ...env }), cwd, as);
  const [, token] = await p.waitFor(/Token: +(\S+)/, 60_000);
  const [, psqlCommand] = await p.waitFor(/\n +(psql .+)\n/);
  const [, wsUrl] = await p.waitFor(/WebSocket: +(\S+)/);
  const [, demoUrl] = await p.waitFor(/Demo app: +(\S+)/);
  return { p, port, token: token!, psqlCommand: psqlCommand!, wsUrl: wsUrl!, demoUrl: demoUrl! };
}

describe('pgbell dev', () => {
  it('without DATABASE_URL: embedded Postgres in ./.pgbell; the printed psql command reaches a client using the printed token; Ctrl-C stops it all; a restart keeps data and token', async () => {
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'pgbell-dev-'));
    await chmod(cwd, 0o755);
    dirs.push(cwd);

    const first = await startDev(cwd);
    expect(first.wsUrl).toBe(`ws://127.0.0.1:${first.port}/`); // this machine only (HOST unset)
    // The demo app: its page, a dev token for the demo user, and /alerts mounted beside them.
    const page = await fetch(first.demoUrl);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<script src="/app.js"></script>');
    expect((await fetch(new URL('/app.js', first.demoUrl))).status).toBe(200);
    const { token: demoToken } = (await (await fetch(new URL('/api/token', first.demoUrl))).json()) as { token: string };
    const list = await fetch(new URL('/alerts', first.demoUrl), { headers: { authorization: `Bearer ${demoToken}` } });
    expect(await list.json()).toMatchObject({ alerts: [], unread: 0 });
    const c = await TestClient.ready(`ws://127.0.0.1:${first.port}/`, first.token);
    expect(c.messages[0]).toEqual({ type: 'ready', userId: 'demo-user', email: 'demo@pgbell.dev', unread: 0, unseen: 0, byType: {} });
    await sh('bash', ['-c', first.psqlCommand]);
    const n = await c.next((m) => m.type === 'notification');
    expect(n.alert).toMatchObject({ userId: 'demo-user', title: 'Hello from psql' });

    // The superuser password is this checkout's own, readable by its owner only, and not on
    // the demo page (anyone who loads the page would otherwise have a superuser).
    const pwFile = path.join(cwd, '.pgbell', 'db-password');
    expect((await stat(pwFile)).mode & 0o777).toBe(0o600);
    const password = (await readFile(pwFile, 'utf8')).trim();
    expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/);
    const firstUrl = first.psqlCommand.match(/psql "([^"]+)"/)![1]!;
    expect(decodeURIComponent(new URL(firstUrl).password)).toBe(password);
    const html = await (await fetch(first.demoUrl)).text();
    expect(html).not.toContain(password);
    expect(html).toContain('db-password');
    const old = new URL(firstUrl);
    old.password = 'pgbell';
    await expect(query(old.toString(), 'SELECT 1')).rejects.toThrow(/password authentication failed/);
    // A cluster made by an earlier pgbell dev (the fixed password, no password file) is moved
    // to a password of its own on its next start.
    await query(firstUrl, `ALTER ROLE postgres PASSWORD 'pgbell'`);
    await rm(pwFile);

    const pidFile = path.join(cwd, '.pgbell', 'data', 'postmaster.pid');
    expect(existsSync(pidFile)).toBe(true);
    first.p.child.kill('SIGINT');
    expect((await c.closed).code).toBe(1001);
    expect((await first.p.exited).code).toBe(0);
    expect(existsSync(pidFile)).toBe(false); // embedded Postgres shut down cleanly

    const second = await startDev(cwd);
    expect(second.token).not.toBe(''); // a fresh token is printed, but the old one still works:
    const again = await TestClient.ready(`ws://127.0.0.1:${second.port}/`, first.token);
    const dbUrl = second.psqlCommand.match(/psql "([^"]+)"/)![1]!;
    expect((await query(dbUrl, `SELECT count(*)::int AS n FROM "Alert"`))[0]!.n).toBe(1);
    const rotated = (await readFile(pwFile, 'utf8')).trim();
    expect(rotated).not.toBe('pgbell');
    expect(decodeURIComponent(new URL(dbUrl).password)).toBe(rotated);
    const oldNow = new URL(dbUrl);
    oldNow.password = 'pgbell';
    await expect(query(oldNow.toString(), 'SELECT 1')).rejects.toThrow(/password authentication failed/);
    again.close();
    second.p.child.kill('SIGTERM');
    expect((await second.p.exited).code).toBe(0);
  }, 120_000);

  it('after a SIGKILL left embedded Postgres running, the next start shuts the orphan down and starts cleanly', async () => {
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'pgbell-dev-'));
    await chmod(cwd, 0o755);
    dirs.push(cwd);
    const first = await startDev(cwd);
    first.p.child.kill('SIGKILL');
    await first.p.exited;
    const orphanPid = Number((await readFile(path.join(cwd, '.pgbell', 'data', 'postmaster.pid'), 'utf8')).split('\n')[0]);
    expect(() => process.kill(orphanPid, 0)).not.toThrow(); // still running, holding the data dir

    const second = await startDev(cwd);
    expect(() => process.kill(orphanPid, 0)).toThrow();
    const c = await TestClient.ready(`ws://127.0.0.1:${second.port}/`, second.token);
    await sh('bash', ['-c', second.psqlCommand]);
    expect((await c.next((m) => m.type === 'notification')).alert.title).toBe('Hello from psql');
    second.p.child.kill('SIGINT');
    expect((await second.p.exited).code).toBe(0);
  }, 120_000);

  // When the suite runs as root, the test above covered root (Postgres runs as the `postgres`
  // system user); this one covers an ordinary account. As non-root the test above is the
  // ordinary-user case already.
  // An ordinary user runs the checkout's own binaries; a checkout inside root's private folder
  // is out of nobody's reach (that is the root case, tested in checkout.test.ts).
  const nobody = { uid: 65534, gid: 65534 };
  const nobodyReaches =
    process.getuid?.() === 0 && spawnSync('/bin/sh', ['-c', 'test -r "$1"', 'sh', fileURLToPath(new URL('../bin/pgbell.js', import.meta.url))], nobody).status === 0;
  it.runIf(nobodyReaches)('works for an ordinary (non-root) user too', async () => {
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'pgbell-dev-'));
    await chown(cwd, nobody.uid, nobody.gid);
    dirs.push(cwd);
    const dev = await startDev(cwd, { HOME: cwd }, nobody);
    const c = await TestClient.ready(`ws://127.0.0.1:${dev.port}/`, dev.token);
    await sh('bash', ['-c', dev.psqlCommand]);
    expect((await c.next((m) => m.type === 'notification')).alert.title).toBe('Hello from psql');
    const owner = (await stat(path.join(cwd, '.pgbell', 'data', 'PG_VERSION'))).uid;
    expect(owner).toBe(nobody.uid);
    dev.p.child.kill('SIGINT');
    expect((await dev.p.exited).code).toBe(0);
  }, 120_000);

  it('embedded Postgres that cannot start gives one line with the cause and the fix, never a stack', async () => {
    // Data made by another major version (an old cluster).
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'pgbell-dev-'));
    await chmod(cwd, 0o755);
    dirs.push(cwd);
    await mkdir(path.join(cwd, '.pgbell', 'data'), { recursive: true });
    await writeFile(path.join(cwd, '.pgbell', 'data', 'PG_VERSION'), '9\n');
    const old = await launch(['dev'], cleanEnv({ PORT: '0', DEMO_PORT: '0' }), cwd).exited;
    expect(old.code).toBe(1);
    expect(old.stderr.trim().split('\n')).toHaveLength(1);
    expect(old.stderr).toMatch(/^pgbell: the embedded Postgres data in .*\/\.pgbell\/data was made by PostgreSQL 9, but the installed binaries are PostgreSQL \d+: run `pgbell clean` to start over/);

    // A port already taken.
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const port = (taken.address() as net.AddressInfo).port;
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-port-'));
    await chmod(dataDir, 0o755);
    dirs.push(dataDir);
    const err = await startEmbeddedPostgres({ dataDir: path.join(dataDir, 'data'), password: 'x', port, persistent: false }).then(
      async (pg) => {
        await pg.stop();
        return null;
      },
      (e: unknown) => e,
    );
    taken.close();
    expect(err).toBeInstanceOf(EmbeddedPostgresError);
    expect((err as Error).message).toBe(`embedded Postgres cannot listen on 127.0.0.1:${port}: the port is in use; stop what uses it or let pgbell pick a free one`);
  }, 60_000);

  it('with DATABASE_URL: uses that database instead, and starts no embedded Postgres; LOG_FORMAT=json gives JSON lines', async () => {
    const url = await emptyDatabase('dev');
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'pgbell-dev-'));
    dirs.push(cwd);

    const dev = await startDev(cwd, { DATABASE_URL: url, LOG_FORMAT: 'json' });
    expect(dev.p.stdout()).toMatch(/^\{"level":30,.*"msg":"pgbell listening on ws:\/\/127\.0\.0\.1:/m);
    expect(dev.psqlCommand).toContain(url);
    expect(existsSync(path.join(cwd, '.pgbell', 'data'))).toBe(false);
    const c = await TestClient.ready(`ws://127.0.0.1:${dev.port}/`, dev.token);
    await sh('bash', ['-c', dev.psqlCommand]);
    expect((await c.next((m) => m.type === 'notification')).alert.title).toBe('Hello from psql');
    dev.p.child.kill('SIGINT');
    expect((await dev.p.exited).code).toBe(0);
  });
});
