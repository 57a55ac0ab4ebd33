/**
 * Lose nothing when whole processes go away: Postgres restarted under a writer (fast and
 * immediate shutdown) while clients stay connected, and the daemon killed with SIGKILL while
 * alerts keep being written. Truth is the "Alert" table: each client must end with exactly its
 * user's committed ids. Each in notify, poll and WAL mode. Runs on a cluster of its own, since
 * it restarts it.
 */
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../src/db/migrate.js';
import { freePort, startEmbeddedPostgres, type EmbeddedPostgres } from '../src/cli/embedded.js';
import { cleanEnv, launch, type Launched } from './helpers/cli.js';
import { SECRET, health, startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { createUser, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let dir: string;
let server: EmbeddedPostgres;
let daemon: TestDaemon | undefined;
const USERS = ['u1', 'u2', 'u3'];

const start = (port?: number) => startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), password: 'recovery', port, settings: { fsync: 'off' } });

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-recovery-'));
  await chmod(dir, 0o755);
  server = await start();
  await migrate(server.url, { channel: 'pgbell' });
  for (const u of USERS) await createUser(server.url, u);
});
afterAll(async () => {
  await daemon?.stop();
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Inserts alerts for random users until stopped, retrying while the database is away. */
function writer(url: () => string, tag: string) {
  let stop = false;
  let attempts = 0;
  const done = (async () => {
    for (let i = 0; !stop; i++) {
      attempts++;
      await query(url(), `INSERT INTO "Alert" ("userId", title) VALUES ($1, $2)`, [USERS[i % USERS.length], `${tag} ${i}`]).catch(() => {});
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    get attempts() {
      return attempts;
    },
    stop: async () => {
      stop = true;
      await done;
    },
  };
}

/** Each tab must hold exactly the alerts of its user written by the writer tagged `tag`. */
async function expectExactly(tabs: Array<{ user: string; tab: Tab }>, tag: string): Promise<void> {
  const truth = new Map<string, Set<string>>();
  for (const u of USERS) {
    const rows = await query(server.url, `SELECT id FROM "Alert" WHERE "userId" = $1 AND title LIKE $2`, [u, `${tag} %`]);
    truth.set(u, new Set(rows.map((r) => r.id)));
  }
  for (const { user, tab } of tabs) {
    await until(() => tab.ids.size >= truth.get(user)!.size, 30_000, `all ${truth.get(user)!.size} alerts of ${user} (have ${tab.ids.size})`);
    expect(tab.ids).toEqual(truth.get(user));
    expect(tab.repeatsWithinConnection).toEqual([]);
  }
}

async function postmasterPid(): Promise<number> {
  return Number((await readFile(path.join(dir, 'data', 'postmaster.pid'), 'utf8')).split('\n')[0]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const MODES = [
  ['notify', { mode: 'notify' }],
  ['poll', { mode: 'poll', pollMs: 50 }],
  ['wal', { mode: 'wal' }],
] as const;

describe.each(MODES)('%s mode', (mode, opts) => {
  const env = (extra: Record<string, string>) => cleanEnv({ DATABASE_URL: server.url, SESSION_SECRET: SECRET, PGBELL_MODE: mode, ...extra });
  beforeAll(async () => {
    await migrate(server.url, { channel: mode === 'notify' ? 'pgbell' : '', publish: mode === 'wal' });
  });

describe('Postgres restarted while clients are connected and a writer keeps writing', () => {
  it.each([
    ['fast', async () => server.stop()],
    [
      'immediate',
      async () => {
        const pid = await postmasterPid();
        process.kill(pid, 'SIGQUIT'); // immediate shutdown: no checkpoint, crash recovery on start
        await until(() => !alive(pid), 10_000, 'postmaster to exit');
      },
    ],
  ])('%s shutdown: every connected client ends with exactly its user\'s alerts', async (_mode, shutdown) => {
    daemon = await startTestDaemon(server.url, opts);
    const tabs = await Promise.all(USERS.flatMap((user) => [0, 1].map(async () => ({ user, tab: await new Tab(await tokenFor(user)).connect(daemon!.url) }))));
    const w = writer(() => server.url, `${mode}-${_mode}`);
    await until(() => w.attempts > 30, 5000, 'some writes');
    const port = server.port;
    await shutdown();
    await new Promise((r) => setTimeout(r, 1500));
    server = await start(port);
    await until(async () => (await health(daemon!.http)).status === 200, 20_000, 'listener back');
    const resumedAt = w.attempts;
    await until(() => w.attempts > resumedAt + 30, 10_000, 'writes after the restart');
    await w.stop();
    await expectExactly(tabs, `${mode}-${_mode}`);
    // The sockets never dropped: this was the daemon's catch-up, not a client resume.
    for (const { tab } of tabs) expect(tab.connections).toBe(1);
    for (const { tab } of tabs) tab.close();
    await daemon.stop();
    daemon = undefined;
  }, 90_000);
});

describe('the daemon is killed with SIGKILL', () => {
  it('alerts written while it is dead reach every client once it is back and they resume from their cursors', async () => {
    const port = await freePort();
    const url = `ws://127.0.0.1:${port}/`;
    const startProcess = async (): Promise<Launched> => {
      const p = launch(['start'], env({ PORT: String(port), HOST: '127.0.0.1' }));
      await p.waitFor(/pgbell listening/);
      return p;
    };
    let p = await startProcess();
    const tabs = await Promise.all(USERS.flatMap((user) => [0, 1].map(async () => ({ user, tab: await new Tab(await tokenFor(user)).connect(url) }))));
    const w = writer(() => server.url, `${mode}-sigkill`);
    await until(() => tabs.every(({ tab }) => tab.ids.size > 3), 10_000, 'live alerts before the kill');
    p.child.kill('SIGKILL');
    await p.exited;
    const killedAt = w.attempts;
    await until(() => w.attempts > killedAt + 30, 10_000, 'writes while the daemon is dead');
    p = await startProcess();
    await Promise.all(tabs.map(({ tab }) => tab.connect(url)));
    const resumedAt = w.attempts;
    await until(() => w.attempts > resumedAt + 20, 10_000, 'writes after the restart');
    await w.stop();
    await expectExactly(tabs, `${mode}-sigkill`);
    for (const { tab } of tabs) {
      expect(tab.connections).toBe(2);
      expect(tab.resets).toBe(0);
    }
    for (const { tab } of tabs) tab.close();
    p.child.kill('SIGTERM');
    expect((await p.exited).code).toBe(0);
  }, 90_000);
});

describe('graceful shutdown under load', () => {
  it('SIGTERM while alerts flow: sockets close with 1001, clients resume on another node, nothing lost', async () => {
    const other = await startTestDaemon(server.url, opts);
    const port = await freePort();
    const p = launch(['start'], env({ PORT: String(port), HOST: '127.0.0.1' }));
    await p.waitFor(/pgbell listening/);
    const url = `ws://127.0.0.1:${port}/`;
    const tabs = await Promise.all(USERS.map(async (user) => ({ user, tab: await new Tab(await tokenFor(user)).connect(url) })));
    const w = writer(() => server.url, `${mode}-sigterm`);
    await until(() => tabs.every(({ tab }) => tab.ids.size > 3), 10_000, 'alerts flowing');
    p.child.kill('SIGTERM');
    for (const { tab } of tabs) expect((await tab.client!.closed).code).toBe(1001);
    expect((await p.exited).code).toBe(0);
    await Promise.all(tabs.map(({ tab }) => tab.connect(other.url)));
    const resumedAt = w.attempts;
    await until(() => w.attempts > resumedAt + 20, 10_000, 'writes after the move');
    await w.stop();
    await expectExactly(tabs, `${mode}-sigterm`);
    for (const { tab } of tabs) tab.close();
    await other.stop();
  }, 60_000);
});
});
