/**
 * `pgbell start --workers N` stopped the way service managers and terminals stop it.
 * systemd (KillMode=control-group, its default) sends SIGTERM to every process of the service,
 * and Ctrl-C sends SIGINT to the terminal's whole process group: each worker gets the signal
 * itself and the primary's SIGTERM a moment later. A worker keeps its handlers while it stops:
 * without them the second signal killed it at once (the default action), its sockets cut (1006)
 * instead of closed with 1001, and it never logged "pgbell stopped".
 */
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { cleanEnv, launch, type Launched } from './helpers/cli.js';
import { TestClient } from './helpers/client.js';
import { SECRET, tokenFor } from './helpers/daemon.js';
import { freshDatabase } from './helpers/pg.js';

const ADMIN = 'admin-token-0123456789abcdef';
const running: Launched[] = [];
afterAll(() => {
  for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
});

async function machine(users: string[]) {
  const db = await freshDatabase(users);
  const p = launch(['start', '--workers', '2'], cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PORT: '0', HOST: '127.0.0.1', LOG_FORMAT: 'json', ADMIN_TOKEN: ADMIN }));
  running.push(p);
  const [, port] = await p.waitFor(/pgbell listening on ws:\/\/127\.0\.0\.1:(\d+)\/ with 2 workers/, 60_000);
  const clients: TestClient[] = [];
  for (const u of users) {
    const c = await TestClient.connect(`ws://127.0.0.1:${port}/`);
    c.send({ type: 'auth', token: await tokenFor(u) });
    await c.next((m) => m.type === 'synced');
    clients.push(c);
  }
  return { p, clients, db, port };
}

it('control: SIGTERM to the primary alone: every socket closed with 1001, both workers stopped', async () => {
  const users = ['sc0', 'sc1', 'sc2', 'sc3'];
  const { p, clients } = await machine(users);
  process.kill(p.child.pid!, 'SIGTERM');
  const codes = await Promise.all(clients.map((c) => c.closed.then((x) => x.code)));
  const r = await p.exited;
  const stoppedWorkers = r.stdout.split('\n').filter((l) => l.includes('"msg":"pgbell stopped"') && l.includes('"worker"')).length;
  expect({ codes, stoppedWorkers }).toEqual({ codes: users.map(() => 1001), stoppedWorkers: 2 });
});

it('SIGTERM to every process of the machine (systemd stop): each worker still drains and closes its sockets with 1001', async () => {
  const users = ['st0', 'st1', 'st2', 'st3'];
  const { p, clients, db, port } = await machine(users);
  const health = (await (await fetch(`http://127.0.0.1:${port}/health`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as any;
  const pids: number[] = health.workers.each.map((w: { pid: number }) => w.pid);
  expect(pids).toHaveLength(2);
  // A worker's stop that takes a moment (as under load: deliveries in flight, a sync read
  // running): one more socket per worker whose sync read waits on a lock, released in 1 s.
  const locker = new pg.Client({ connectionString: db });
  await locker.connect();
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE pgbell."AlertChange" IN ACCESS EXCLUSIVE MODE');
  const late: TestClient[] = [];
  for (const u of users) {
    const c = await TestClient.connect(`ws://127.0.0.1:${port}/`);
    c.send({ type: 'auth', token: await tokenFor(u) });
    late.push(c);
  }
  await new Promise((r) => setTimeout(r, 300));
  // What `systemctl stop` does: SIGTERM to every process in the service's cgroup (the primary
  // then sends each worker its own SIGTERM).
  for (const pid of pids) process.kill(pid, 'SIGTERM');
  process.kill(p.child.pid!, 'SIGTERM');
  setTimeout(() => void locker.query('ROLLBACK').then(() => locker.end()), 1000);
  const codes = await Promise.all(clients.map((c) => c.closed.then((x) => x.code)));
  const r = await p.exited;
  const stoppedWorkers = r.stdout.split('\n').filter((l) => l.includes('"msg":"pgbell stopped"') && l.includes('"worker"')).length;
  expect({ codes, stoppedWorkers }).toEqual({ codes: users.map(() => 1001), stoppedWorkers: 2 });
});
