/**
 * A rolling restart whose new worker does not serve within WORKER_START_MS (here 3 s: a deploy
 * whose code hangs at start), with a second SIGHUP queued behind it (src/daemon/workers.ts, roll/restart
 * and the cluster 'exit' handler). docs/operations.md: such a replacement "ends the restart with
 * the old workers still serving", and a queued SIGHUP runs one more restart; the machine ends
 * with N workers.
 *
 * The machine runs from a copy of bin/ and dist/ whose bin makes a new worker hang (never says
 * hello) while a flag file exists: the code on disk at the time of the first SIGHUP. The flag
 * is removed before the queued restart, as a fixed deploy would be.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { cleanEnv } from './helpers/cli.js';
import { SECRET } from './helpers/daemon.js';
import { freshDatabase } from './helpers/pg.js';
import { until } from './helpers/tab.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ADMIN = 'admin-token-0123456789abcdef';
let child: ChildProcess | undefined;
let dir: string | undefined;

afterAll(() => {
  if (child?.pid) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {}
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const children = (pid: number) =>
  execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' }).split('\n').filter((l) => l.trim() !== '').length;

it('a spare cut at WORKER_START_MS with a second SIGHUP queued leaves the machine with N workers', async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'pgbell-spare-'));
  for (const d of ['bin', 'dist', 'sql']) cpSync(path.join(ROOT, d), path.join(dir, d), { recursive: true });
  cpSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  const flag = path.join(dir, 'hang');
  const bin = path.join(dir, 'bin', 'pgbell.js');
  const original = readFileSync(bin, 'utf8');
  // After the shebang and the first import: a worker started while the flag exists hangs.
  writeFileSync(
    bin,
    original.replace(
      "import { existsSync } from 'node:fs';\n",
      "import { existsSync } from 'node:fs';\nimport cluster from 'node:cluster';\nif (cluster.isWorker && existsSync(new URL('../hang', import.meta.url))) { setInterval(() => {}, 1 << 30); await new Promise(() => {}); }\n",
    ),
  );

  const db = await freshDatabase(['sp1']);
  const env = cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PORT: '0', HOST: '127.0.0.1', LOG_FORMAT: 'json', ADMIN_TOKEN: ADMIN, WORKER_START_MS: '3000' });
  child = spawn(process.execPath, [bin, 'start', '--workers', '3'], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  await until(() => /with 3 workers/.test(out), 60_000, 'the machine up');
  const port = /listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(out)![1];
  const pid = child.pid!;
  expect(children(pid)).toBe(3);

  writeFileSync(flag, '');
  child.kill('SIGHUP');
  await until(() => /rolling restart: replacing 3 workers/.test(out), 10_000, 'the first roll');
  await until(() => children(pid) === 4, 10_000, 'the spare forked');
  await new Promise((r) => setTimeout(r, 1000)); // the spare has read the flag and hangs
  rmSync(flag);
  child.kill('SIGHUP');
  await until(() => /another follows it/.test(out), 10_000, 'the second roll queued');
  await until(() => /rolling restart stopped/.test(out), 90_000, 'the spare given up at WORKER_START_MS');
  await until(() => /rolling restart done/.test(out), 90_000, 'the queued roll done');
  await new Promise((r) => setTimeout(r, 3000));

  const h = (await (await fetch(`http://127.0.0.1:${port}/health`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as any;
  const restartLines = out.split('\n').filter((l) => /starting another in/.test(l));
  expect.soft(restartLines, 'the SIGKILLed spare was taken for an ordinary death and replaced').toEqual([]);
  expect({ processes: children(pid), serving: h.workers.serving }).toEqual({ processes: 3, serving: 3 });

  child.kill('SIGTERM');
  await new Promise((r) => child!.once('exit', r));
}, 240_000);
