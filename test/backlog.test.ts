/**
 * The listen backlog (LISTEN_BACKLOG): how many connections the kernel queues before the daemon
 * accepts them. Node's default, 511, overflowed in a 60,000-socket reconnect storm: the kernel
 * dropped handshakes and TCP retried them only after seconds. The daemon asks for 4,096, in one
 * process and in a machine of workers (node:cluster passes a worker's backlog to the primary's
 * listening socket), and the kernel shows what it got (`ss -ltn`: a listener's Send-Q).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, expect, it } from 'vitest';
import { cleanEnv, launch, type Launched } from './helpers/cli.js';
import { SECRET } from './helpers/daemon.js';
import { freshDatabase } from './helpers/pg.js';

const running: Launched[] = [];
afterAll(() => {
  for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
});

/** The kernel caps a backlog at net.core.somaxconn. */
const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));

/** The backlog of the socket listening on 127.0.0.1:port, as the kernel has it. */
function backlog(port: string): number {
  const out = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' }).trim();
  return Number(out.split(/\s+/)[2]);
}

async function start(args: string[], env: Record<string, string>, ready: RegExp): Promise<{ p: Launched; port: string }> {
  const db = await freshDatabase();
  const p = launch(['start', ...args], cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PORT: '0', HOST: '127.0.0.1', LOG_FORMAT: 'json', ...env }));
  running.push(p);
  const [, port] = await p.waitFor(ready, 60_000);
  return { p, port: port! };
}

it('one process listens with LISTEN_BACKLOG, and with 4096 by default', async () => {
  const set = await start([], { LISTEN_BACKLOG: '1234' }, /pgbell listening on ws:\/\/127\.0\.0\.1:(\d+)\//);
  expect(backlog(set.port)).toBe(Math.min(1234, somaxconn));
  set.p.child.kill('SIGTERM');
  await set.p.exited;
  const byDefault = await start([], {}, /pgbell listening on ws:\/\/127\.0\.0\.1:(\d+)\//);
  expect(backlog(byDefault.port)).toBe(Math.min(4096, somaxconn));
  byDefault.p.child.kill('SIGTERM');
  await byDefault.p.exited;
});

it('a machine of workers listens with it too (the primary holds the listening socket)', async () => {
  const { p, port } = await start(['--workers', '2'], {}, /pgbell listening on ws:\/\/127\.0\.0\.1:(\d+)\/ with 2 workers/);
  expect(backlog(port)).toBe(Math.min(4096, somaxconn));
  p.child.kill('SIGTERM');
  expect((await p.exited).code).toBe(0);
});

it('a backlog outside 1–65535 is refused with a message naming it', async () => {
  const db = await freshDatabase();
  const p = launch(['start'], cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PORT: '0', HOST: '127.0.0.1', LISTEN_BACKLOG: '0' }));
  running.push(p);
  const r = await p.exited;
  expect(r.code).not.toBe(0);
  expect(r.stderr + r.stdout).toMatch(/LISTEN_BACKLOG/);
});
