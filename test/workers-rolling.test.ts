/**
 * SIGHUP and the rolling restart (src/daemon/workers.ts, src/cli/cli.ts) at their edges: a
 * worker that dies while its spare starts, a hangup of the whole process group, one process
 * (--workers 1), a hangup while the machine starts, and /health while workers are replaced.
 * The machine always ends with N workers, sockets close with 1001, and nothing dies of SIGHUP.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, cleanEnv } from './helpers/cli.js';
import { ADMIN, adminHealth } from './helpers/admin.js';
import { SECRET, tokenFor } from './helpers/daemon.js';
import { freshDatabase } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

const USERS = ['rr0', 'rr1', 'rr2', 'rr3'];

interface M {
  child: ChildProcess;
  out: () => string;
  waitFor(re: RegExp, ms?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  url: string;
  http: string;
}
const started: M[] = [];

/** Like helpers/cli launch, but in its own process group (detached) so the group can be signalled. */
function launchGroup(args: string[], env: NodeJS.ProcessEnv): M {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  const m: M = {
    child,
    out: () => out,
    exited,
    url: '',
    http: '',
    waitFor: async (re, ms = 60_000) => {
      const deadline = Date.now() + ms;
      for (;;) {
        const hit = out.match(re);
        if (hit) return hit;
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited (${child.exitCode ?? child.signalCode}) before ${re}\n${out}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}\n${out}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
  started.push(m);
  return m;
}

afterAll(() => {
  for (const m of started) {
    try {
      process.kill(-m.child.pid!, 'SIGKILL');
    } catch {}
  }
});

const env = (db: string, port = '0') => cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PORT: port, HOST: '127.0.0.1', LOG_FORMAT: 'json', ADMIN_TOKEN: ADMIN });

async function machine(db: string, workers = 3, listen = '0'): Promise<M> {
  const m = launchGroup(workers > 1 ? ['start', '--workers', String(workers)] : ['start'], env(db, listen));
  const [, port] = await m.waitFor(workers > 1 ? /pgbell listening on ws:\/\/127\.0\.0\.1:(\d+)\/ with/ : /pgbell listening on ws:\/\/127\.0\.0\.1:(\d+)\//);
  m.url = `ws://127.0.0.1:${port}/`;
  m.http = `http://127.0.0.1:${port}`;
  return m;
}

/** The primary's live child processes (its workers). */
const children = (pid: number) =>
  execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' }).split('\n').filter((l) => l.trim() !== '').length;

async function tabsWithCloseCodes(url: string): Promise<{ tabs: Tab[]; codes: number[] }> {
  const codes: number[] = [];
  const tabs: Tab[] = [];
  for (const u of USERS) {
    const t = await new Tab(await tokenFor(u)).connect(url);
    t.client!.ws.once('close', (code: number) => codes.push(code));
    tabs.push(t);
  }
  return { tabs, codes };
}

async function stop(m: M): Promise<void> {
  if (m.child.exitCode === null && m.child.signalCode === null) m.child.kill('SIGTERM');
  await m.exited;
}

describe('SIGHUP and the rolling restart at their edges', () => {
  it('a worker that dies on its own while its replacement starts leaves the machine with N workers (not N+1)', async () => {
    const m = await machine(await freshDatabase(USERS));
    const first = (await adminHealth(m)).body.workers.each[0].pid as number; // ready order = roll order
    m.child.kill('SIGHUP');
    await m.waitFor(/rolling restart: replacing 3 workers/);
    process.kill(first, 'SIGKILL'); // dies while its spare is starting
    await m.waitFor(/rolling restart done/);
    await new Promise((r) => setTimeout(r, 3000)); // the exit handler's backoff fork
    const h = await adminHealth(m);
    expect(children(m.child.pid!)).toBe(3);
    expect(h.body.workers.serving).toBe(3);
    await stop(m);
  }, 120_000);

  it('SIGHUP to the whole process group (terminal hangup) drains with 1001 and leaves N workers', async () => {
    // A fixed port: with PORT=0, a machine whose workers all die at once rebinds a new one.
    const port = await new Promise<number>((r) => { const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as AddressInfo).port; s.close(() => r(p)); }); });
    const m = await machine(await freshDatabase(USERS), 3, String(port));
    const { tabs, codes } = await tabsWithCloseCodes(m.url);
    process.kill(-m.child.pid!, 'SIGHUP');
    await m.waitFor(/rolling restart done|rolling restart stopped/);
    await new Promise((r) => setTimeout(r, 3000));
    const h = await adminHealth(m);
    for (const t of tabs) t.close();
    expect(codes.every((c) => c === 1001)).toBe(true);
    expect(h.body.workers.restarts).toBe(0);
    expect(children(m.child.pid!)).toBe(3);
    await stop(m);
  }, 120_000);

  it('--workers 1: SIGHUP does not kill the daemon', async () => {
    const m = await machine(await freshDatabase(USERS), 1);
    const { tabs, codes } = await tabsWithCloseCodes(m.url);
    m.child.kill('SIGHUP');
    const r = await Promise.race([m.exited, new Promise<null>((res) => setTimeout(() => res(null), 2000))]);
    for (const t of tabs) t.close();
    expect(r).toBeNull();
    await stop(m);
  }, 60_000);

  it('SIGHUP during startup (before startMachine resolved) does not kill the primary', async () => {
    const m = launchGroup(['start', '--workers', '3'], env(await freshDatabase(USERS)));
    await new Promise((r) => setTimeout(r, 400));
    expect(m.out()).not.toMatch(/with 3 workers/); // the primary is still inside startMachine
    m.child.kill('SIGHUP');
    const r = await Promise.race([m.exited, new Promise<null>((res) => setTimeout(() => res(null), 3000))]);
    expect(r).toBeNull();
    await stop(m);
  }, 60_000);

  it('admin /health stays 200 through a rolling restart (N always serve)', async () => {
    const m = await machine(await freshDatabase(USERS));
    const { tabs } = await tabsWithCloseCodes(m.url);
    const statuses: Array<[number, string, number]> = [];
    let watching = true;
    const watch = (async () => {
      while (watching) {
        const h = await adminHealth(m);
        statuses.push([h.status, h.body.status, h.body.workers?.serving]);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    m.child.kill('SIGHUP');
    await m.waitFor(/rolling restart done/);
    watching = false;
    await watch;
    const bad = statuses.filter(([s]) => s !== 200);
    for (const t of tabs) t.close();
    expect(bad).toEqual([]);
    await stop(m);
  }, 120_000);

  it('a second SIGHUP during a rolling restart queues one more, so every worker ends on the newest code', async () => {
    const m = await machine(await freshDatabase(USERS));
    const before = (await adminHealth(m)).body.workers.each.map((w: { pid: number }) => w.pid) as number[];
    m.child.kill('SIGHUP');
    await m.waitFor(/rolling restart: replacing 3 workers/);
    m.child.kill('SIGHUP');
    await m.waitFor(/another follows it/);
    await until(() => (m.out().match(/rolling restart done/g) ?? []).length === 2, 90_000, 'two rolling restarts');
    const after = await adminHealth(m);
    expect(after.body.workers.serving).toBe(3);
    expect(children(m.child.pid!)).toBe(3);
    // The second restart replaced the first one's new workers too: 6 started in all.
    expect((m.out().match(/serves in place of worker/g) ?? []).length).toBe(6);
    for (const w of after.body.workers.each) expect(before).not.toContain(w.pid);
    await stop(m);
  }, 150_000);
});
