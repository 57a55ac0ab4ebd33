/**
 * A worker process that cannot be created. For EMFILE, EAGAIN or ENOENT Node emits an error and
 * never 'exit', so a rolling restart waited WORKER_START_MS for a spare that did not exist, and
 * a crashed worker whose replacement failed to spawn stayed missing for good; for ENOMEM or
 * E2BIG cluster.fork() throws, which ended the primary and every worker with it. Now the restart
 * stops at once with the old workers serving, and a replacement is tried again.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { BIN, cleanEnv } from './helpers/cli.js';
import { SECRET } from './helpers/daemon.js';
import { freshDatabase } from './helpers/pg.js';
import { until } from './helpers/tab.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/fail-fork.mjs', import.meta.url));
const started: ChildProcess[] = [];
const dir = mkdtempSync(path.join(os.tmpdir(), 'pgbell-spawn-'));
afterAll(() => {
  for (const child of started) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {}
  }
  rmSync(dir, { recursive: true, force: true });
});

const workerPids = (pid: number) =>
  execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' }).split('\n').map((l) => l.trim()).filter((l) => l !== '');

it.each(['error', 'throw'])('spawn failing by %s: a spare that cannot be spawned ends the rolling restart at once; a crashed worker whose replacement cannot be spawned is tried again', async (how) => {
  const flag = path.join(dir, `fail-${how}`);
  const db = await freshDatabase();
  // WORKER_START_MS at its longest: before the fix the restart waited it out.
  const env = cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PORT: '0', HOST: '127.0.0.1', LOG_FORMAT: 'json', WORKER_START_MS: '3600000', PGBELL_TEST_FAIL_FORK: flag, PGBELL_TEST_FAIL_FORK_HOW: how });
  const child = spawn(process.execPath, ['--import', FIXTURE, BIN, 'start', '--workers', '2'], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  started.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  await until(() => /with 2 workers/.test(out), 60_000, 'the machine up');
  const pid = child.pid!;
  expect(workerPids(pid)).toHaveLength(2);

  writeFileSync(flag, '');
  child.kill('SIGHUP');
  await until(() => /rolling restart stopped/.test(out), 10_000, `the restart stopped at once; the log:\n${out}`);
  expect(out).toMatch(how === 'error' ? /could not start worker \d+: spawn .*ENOENT/ : /could not start a worker: spawn E2BIG/);
  expect(workerPids(pid)).toHaveLength(2);

  // A worker dies while spawns fail: its replacement is tried again (with a backoff) until one starts.
  const victim = workerPids(pid)[0]!;
  process.kill(Number(victim), 'SIGKILL');
  const tries = () => (out.match(/could not start (a )?worker/g) ?? []).length;
  const before = tries();
  await until(() => tries() >= before + 2, 20_000, 'the replacement tried again');
  expect(workerPids(pid)).toHaveLength(1);
  rmSync(flag);
  await until(() => workerPids(pid).length === 2, 20_000, 'a replacement started once spawns work');

  // And the next restart goes through.
  child.kill('SIGHUP');
  await until(() => /rolling restart done/.test(out), 60_000, 'a rolling restart done');
  expect(workerPids(pid)).toHaveLength(2);
  child.kill('SIGTERM');
  expect((await new Promise<number | null>((r) => child.once('exit', (code) => r(code))))).toBe(0);
}, 150_000);
