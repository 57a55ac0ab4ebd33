/**
 * `pgbell start --workers N` (src/daemon/workers.ts), run as an operator runs it: the real CLI,
 * real sockets, real Postgres. Sockets of many users spread over the workers get every alert
 * once; the database sees one listener (or one replication stream), not one per worker; /health
 * and /metrics add up the machine; a SIGKILLed worker is replaced and its sockets resume from
 * their cursors with nothing lost, nothing to the wrong user and nothing twice on a connection.
 */
import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { liveBatch, type Change } from '../src/db/changes.js';
import { createDb } from '../src/db/connect.js';
import { decodeChange, encodeChange } from '../src/sources/forwarded.js';
import { LISTENER_APPLICATION_NAME } from '../src/sources/listen.js';
import { cleanEnv, launch, run, type Launched } from './helpers/cli.js';
import { ADMIN, adminHealth } from './helpers/admin.js';
import { SECRET, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';
import { haveRedis, REDIS_URL } from './helpers/redis.js';

const USERS = Array.from({ length: 12 }, (_, i) => `wk${i}`);

interface Machine {
  p: Launched;
  url: string;
  http: string;
}

const running: Machine[] = [];


async function startMachine(db: string, env: Record<string, string> = {}): Promise<Machine> {
  const p = launch(['start', '--workers', '3'], cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PORT: '0', HOST: '127.0.0.1', LOG_FORMAT: 'json', ADMIN_TOKEN: ADMIN, ...env }));
  const m: Machine = { p, url: '', http: '' };
  running.push(m);
  const [, port] = await p.waitFor(/pgbell listening on ws:\/\/127\.0\.0\.1:(\d+)\/ with 3 workers/, 60_000);
  m.url = `ws://127.0.0.1:${port}/`;
  m.http = `http://127.0.0.1:${port}`;
  return m;
}

async function stopMachine(m: Machine): Promise<void> {
  if (m.p.child.exitCode === null && m.p.child.signalCode === null) m.p.child.kill('SIGTERM');
  const r = await m.p.exited;
  expect(r.code).toBe(0);
}

afterAll(() => {
  for (const m of running) if (m.p.child.exitCode === null && m.p.child.signalCode === null) m.p.child.kill('SIGKILL');
});

async function metricValue(m: Machine, name: string): Promise<number> {
  const text = await (await fetch(`${m.http}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
}

/** A tab that records the counts of the last message after its sync (an alert of another user would be an id not its user's). */
class CountingTab extends Tab {
  unread: number | undefined;
  /** The close codes of its connections that ended (see reconnecting). */
  closeCodes: number[] = [];
  override async connect(url: string, timeoutMs?: number): Promise<this> {
    await super.connect(url, timeoutMs);
    this.client!.ws.on('message', (data) => {
      const m = JSON.parse(String(data));
      if (typeof m.unread === 'number') this.unread = m.unread;
    });
    return this;
  }
}

/** Two tabs per user, all connected (they spread over the workers). */
async function openTabs(m: Machine, users = USERS): Promise<Map<string, CountingTab[]>> {
  const tabs = new Map<string, CountingTab[]>();
  for (const u of users) {
    const token = await tokenFor(u);
    tabs.set(u, [await new CountingTab(token).connect(m.url), await new CountingTab(token, true).connect(m.url)]);
  }
  return tabs;
}

async function insert(db: string, rows: number, all = USERS): Promise<Map<string, Set<string>>> {
  const mine = new Map<string, Set<string>>(all.map((u) => [u, new Set()]));
  const client = new pg.Client({ connectionString: db });
  await client.connect();
  try {
    for (let i = 0; i < rows; i++) {
      // Some transactions carry several users' alerts.
      const users = i % 3 === 0 ? [all[i % all.length]!, all[(i + 5) % all.length]!] : [all[i % all.length]!];
      const r = await client.query<{ id: string; userId: string }>(`INSERT INTO "Alert" ("userId", title) SELECT u, 'alert ${i}' FROM unnest($1::text[]) u RETURNING id, "userId"`, [users]);
      for (const row of r.rows) mine.get(row.userId)!.add(row.id);
    }
  } finally {
    await client.end();
  }
  return mine;
}

const listeners = async (db: string) =>
  (await query<{ n: number }>(db, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`, [LISTENER_APPLICATION_NAME]))[0]!.n;

function expectAllDelivered(tabs: Map<string, CountingTab[]>, mine: Map<string, Set<string>>): void {
  for (const [u, list] of tabs) {
    for (const tab of list) {
      expect([...tab.ids].sort()).toEqual([...mine.get(u)!].sort());
      expect(tab.repeatsWithinConnection).toEqual([]);
    }
  }
}

/** Like pgbell/client: a socket that closes reconnects with its cursor, to whichever worker. Returns what stops it. */
function reconnecting(m: Machine, tabs: Map<string, CountingTab[]>): () => void {
  let done = false;
  const keep = (tab: CountingTab) => {
    tab.client!.ws.once('close', (code: number) => {
      tab.closeCodes.push(code);
      if (done) return;
      void (async () => {
        for (;;) {
          try {
            await tab.connect(m.url);
            keep(tab);
            return;
          } catch {
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      })();
    });
  };
  for (const list of tabs.values()) list.forEach(keep);
  return () => void (done = true);
}

describe('the wire between the primary and its workers', () => {
  it('carries every kind of change through JSON with its bigints', () => {
    const changes: Change[] = [
      { kind: 'alert', txid: 2n ** 40n + 7n, insertTxid: 2n ** 40n, seq: 3n, alert: { id: 'a1', userId: 'u', type: 't', title: 'x', message: '', link: null, data: { k: [1] }, read: false, seen: false, archived: false, createdAt: '2026-01-01T00:00:00.000Z' } },
      { kind: 'delete', txid: 9n, id: 'a2', userId: 'u' },
      { kind: 'preferences', txid: 10n, userId: 'u', muted: ['t'] },
      { kind: 'delete', txid: 11n, id: 'a2', userId: 'u', outlived: true },
      { kind: 'alert', txid: 11n, insertTxid: 11n, seq: 4n, replaced: true, alert: { id: 'a2', userId: 'u', type: 't', title: 'back', message: '', link: null, data: null, read: false, seen: false, archived: false, createdAt: '2026-01-01T00:00:00.000Z' } },
    ];
    expect(JSON.parse(JSON.stringify(changes.map(encodeChange))).map(decodeChange)).toEqual(changes);
  });

  it('a worker\'s live step reads nothing: changes handed over with their counts go out as they are', async () => {
    // A database no one listens at: any query would fail.
    const nowhere = createDb('postgres://pgbell@127.0.0.1:1/nowhere');
    try {
      const alert: Change = { kind: 'alert', txid: 11n, insertTxid: 11n, seq: 1n, alert: { id: 'a1', userId: 'u', type: 'info', title: 'x', message: '', link: null, data: null, read: false, seen: false, archived: false, createdAt: '2026-01-01T00:00:00.000Z' } };
      const muted = { kind: 'preferences', txid: 12n, userId: 'u', muted: [] } as Change;
      const batch = await liveBatch(
        nowhere,
        [
          { txid: '11', carried: [alert], counted: { unread: new Map([['u', { info: { unread: 1, unseen: 1 } }]]), muted: new Map([['u', ['x']]]) } },
          { txid: null },
          { txid: '12', carried: [muted], counted: { unread: new Map([['u', { info: { unread: 1, unseen: 1 } }]]), muted: new Map() } },
        ],
        () => {
          throw new Error('no read, so no list of users is asked for');
        },
      );
      expect(batch.changes).toEqual([alert, muted]);
      expect(batch.unread.get('u')).toEqual({ info: { unread: 1, unseen: 1 } });
      // The later transaction's counts win: its unmute leaves none muted.
      expect(batch.muted?.has('u')).toBe(false);
    } finally {
      await nowhere.destroy();
    }
  });
});

describe('pgbell start --workers 3', () => {
  it('notify mode: every socket gets its user\'s alerts once, with the right counts; one listener; /health and /metrics add up the machine', async () => {
    const db = await freshDatabase(USERS);
    const m = await startMachine(db);
    expect(await listeners(db)).toBe(1);
    const tabs = await openTabs(m);
    const h = await adminHealth(m);
    expect(h.status).toBe(200);
    expect(h.body).toMatchObject({ status: 'ok', connections: USERS.length * 2, listener: { state: 'connected' }, workers: { wanted: 3, serving: 3 } });
    // Round robin: the sockets are spread over the workers.
    const per = h.body.workers.each.map((w: { connections: number }) => w.connections);
    expect(per.reduce((a: number, b: number) => a + b, 0)).toBe(USERS.length * 2);
    expect(per.filter((n: number) => n > 0).length).toBeGreaterThanOrEqual(2);
    expect(await metricValue(m, 'pgbell_connections')).toBe(USERS.length * 2);
    expect(await metricValue(m, 'pgbell_workers')).toBe(3);

    const mine = await insert(db, 36);
    await until(() => [...tabs].every(([u, list]) => list.every((t) => t.ids.size === mine.get(u)!.size)), 15_000, 'every alert on every tab');
    expectAllDelivered(tabs, mine);
    // The counts that came with the last alert are the user's.
    for (const [u, list] of tabs) for (const t of list) expect(t.unread).toBe(mine.get(u)!.size);
    // Still one listener, and no worker read on its own.
    expect(await listeners(db)).toBe(1);
    for (const list of tabs.values()) for (const t of list) t.close();
    await until(async () => (await adminHealth(m)).body.connections === 0, 5000, 'no sockets');
    await stopMachine(m);
    expect(m.p.stdout()).toMatch(/"msg":"pgbell stopped"/);
  });

  it('WAL mode: one replication connection for three workers; alerts and counts arrive', async (ctx) => {
    const db = await freshDatabase(USERS);
    // A server pointed at with TEST_DATABASE_URL may not have it (the embedded one does).
    const wal_level = (await query<{ wal_level: string }>(db, 'SHOW wal_level'))[0]!.wal_level;
    if (wal_level !== 'logical') ctx.skip(`the server's wal_level is ${wal_level}`);
    expect((await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'wal' }))).code).toBe(0);
    const m = await startMachine(db, { PGBELL_MODE: 'wal' });
    const walsenders = async () => (await query<{ n: number }>(db, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'walsender'`))[0]!.n;
    // The stream connects once the machine serves (WAL mode keeps trying on its own).
    await until(async () => (await walsenders()) > 0, 15_000, 'the replication connection');
    await new Promise((r) => setTimeout(r, 500));
    expect(await walsenders()).toBe(1);
    expect(await listeners(db)).toBe(1);
    const tabs = await openTabs(m);
    const mine = await insert(db, 24);
    await until(() => [...tabs].every(([u, list]) => list.every((t) => t.ids.size === mine.get(u)!.size)), 15_000, 'every alert on every tab');
    expectAllDelivered(tabs, mine);
    for (const [u, list] of tabs) for (const t of list) expect(t.unread).toBe(mine.get(u)!.size);
    expect(await walsenders()).toBe(1);
    for (const list of tabs.values()) for (const t of list) t.close();
    await stopMachine(m);
  });

  it.skipIf(!haveRedis)('Redis fan-out: each worker a node, one relay (one listener) for the machine; every alert arrives once', async () => {
    // Redis channels are shared by every database on this Redis: users unique to this run.
    const tag = Math.random().toString(36).slice(2, 8);
    const users = USERS.slice(0, 6).map((u) => `${u}-${tag}`);
    const db = await freshDatabase(users);
    const m = await startMachine(db, { PGBELL_FANOUT: 'redis', REDIS_URL });
    await until(async () => (await adminHealth(m)).body.listener?.relay === true, 15_000, 'a relay');
    expect(await listeners(db)).toBe(1);
    const tabs = await openTabs(m, users);
    expect((await adminHealth(m)).body.connections).toBe(users.length * 2);
    const mine = await insert(db, 18, users);
    await until(() => [...tabs].every(([u, list]) => list.every((t) => t.ids.size === mine.get(u)!.size)), 15_000, 'every alert on every tab');
    expectAllDelivered(tabs, mine);
    for (const [u, list] of tabs) for (const t of list) expect(t.unread).toBe(mine.get(u)!.size);
    expect(await listeners(db)).toBe(1);
    for (const list of tabs.values()) for (const t of list) t.close();
    await stopMachine(m);
  });

  it('the primary\'s listener loses its connection: every worker catches its sockets up, as one daemon does', async () => {
    const db = await freshDatabase(USERS);
    const dbName = new URL(db).pathname.slice(1);
    const m = await startMachine(db);
    const tabs = await openTabs(m);
    const writer = new pg.Client({ connectionString: db });
    await writer.connect();
    const mine = new Map<string, Set<string>>(USERS.map((u) => [u, new Set()]));
    const write = async (title: string) => {
      const r = await writer.query<{ id: string; userId: string }>(`INSERT INTO "Alert" ("userId", title) SELECT u, $2 FROM unnest($1::text[]) u RETURNING id, "userId"`, [USERS, title]);
      for (const row of r.rows) mine.get(row.userId)!.add(row.id);
    };
    try {
      await write('before');
      // No new connection while the listener is gone: what commits meanwhile is announced to no one.
      await query(inject('pg').adminUrl, `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS false`);
      await query(inject('pg').adminUrl, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $2 AND application_name = $1`, [LISTENER_APPLICATION_NAME, dbName]);
      await until(async () => (await adminHealth(m)).body.listener.state !== 'connected', 10_000, 'the listener to be gone');
      await write('while the listener is gone');
      const down = await adminHealth(m);
      expect(down.status).toBe(503);
      expect(down.body.status).toBe('degraded');
      await query(inject('pg').adminUrl, `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`);
      await until(async () => (await adminHealth(m)).status === 200, 20_000, 'the listener back');
      await write('after');
    } finally {
      await query(inject('pg').adminUrl, `ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`);
      await writer.end();
    }
    await until(() => [...tabs].every(([u, list]) => list.every((t) => t.ids.size === mine.get(u)!.size)), 15_000, 'every alert on every tab');
    expectAllDelivered(tabs, mine);
    expect((await adminHealth(m)).body.listener.reconnects).toBe(1);
    // Each worker caught up (its sockets read from their cursors), as one daemon does.
    const caughtUp = m.p.stdout().split('\n').filter((l) => l.includes('catching up after the listener reconnected'));
    expect(new Set(caughtUp.map((l) => JSON.parse(l).worker)).size).toBe(3);
    expect(await listeners(db)).toBe(1);
    for (const list of tabs.values()) for (const t of list) t.close();
    await stopMachine(m);
  });

  it('a SIGKILLed worker is replaced; its sockets reconnect with their cursors and get every alert, none twice, none of another user', async () => {
    const db = await freshDatabase(USERS);
    const m = await startMachine(db);
    const tabs = await openTabs(m);
    const stopReconnecting = reconnecting(m, tabs);
    const before = await adminHealth(m);
    const victim = before.body.workers.each.find((w: { connections: number }) => w.connections > 0);
    const inserting = insert(db, 90);
    await new Promise((r) => setTimeout(r, 300));
    process.kill(victim.pid, 'SIGKILL');
    // Until it is replaced the machine says so (a new worker takes about a second to start).
    await until(async () => {
      const h = await adminHealth(m);
      return h.status === 503 && h.body.status === 'degraded' && h.body.workers.serving === 2;
    }, 5000, '/health to report the missing worker');
    const mine = await inserting;
    await until(async () => {
      const h = await adminHealth(m);
      return h.body.workers.serving === 3 && h.body.workers.restarts === 1 && h.body.connections === USERS.length * 2;
    }, 30_000, 'the worker replaced and every socket back');
    await until(() => [...tabs].every(([u, list]) => list.every((t) => t.ids.size === mine.get(u)!.size)), 20_000, 'every alert on every tab');
    stopReconnecting();
    expectAllDelivered(tabs, mine);
    const reconnected = [...tabs.values()].flat().filter((t) => t.connections > 1).length;
    expect(reconnected).toBe(victim.connections);
    expect(m.p.stdout()).toMatch(new RegExp(`worker \\d+ \\(pid ${victim.pid}\\) exited \\(SIGKILL\\); starting another`));
    const after = await adminHealth(m);
    expect(after.body.workers.each.map((w: { pid: number }) => w.pid)).not.toContain(victim.pid);
    expect(await listeners(db)).toBe(1);
    for (const list of tabs.values()) for (const t of list) t.close();
    await stopMachine(m);
  }, 90_000);

  it('SIGHUP: a rolling restart replaces every worker in turn, never fewer than 3 serving; sockets move with their cursors, nothing lost or twice', async () => {
    const db = await freshDatabase(USERS);
    const m = await startMachine(db);
    const tabs = await openTabs(m);
    const stopReconnecting = reconnecting(m, tabs);
    const before = (await adminHealth(m)).body.workers.each.map((w: { pid: number }) => w.pid) as number[];
    let fewest = Infinity;
    let watching = true;
    const watch = (async () => {
      while (watching) {
        fewest = Math.min(fewest, (await adminHealth(m)).body.workers.serving);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const inserting = insert(db, 150);
    await new Promise((r) => setTimeout(r, 200));
    m.p.child.kill('SIGHUP');
    await m.p.waitFor(/rolling restart done/, 60_000);
    const mine = await inserting;
    watching = false;
    await watch;
    await until(async () => (await adminHealth(m)).body.connections === USERS.length * 2, 30_000, 'every socket back');
    await until(() => [...tabs].every(([u, list]) => list.every((t) => t.ids.size === mine.get(u)!.size)), 20_000, 'every alert on every tab');
    stopReconnecting();
    expectAllDelivered(tabs, mine);
    const after = await adminHealth(m);
    const pids = after.body.workers.each.map((w: { pid: number }) => w.pid) as number[];
    expect(pids).toHaveLength(3);
    for (const pid of before) expect(pids).not.toContain(pid);
    expect(fewest).toBeGreaterThanOrEqual(3);
    // Not a crash: nothing counted as a restart, and every socket the old workers held was closed with 1001.
    expect(after.body.workers.restarts).toBe(0);
    const codes = [...tabs.values()].flat().flatMap((t) => t.closeCodes);
    expect(codes.length).toBeGreaterThan(0);
    expect(codes.every((c) => c === 1001)).toBe(true);
    for (const list of tabs.values()) for (const t of list) t.close();
    await stopMachine(m);
  });
});
