/**
 * CHANGELOG: "SIGHUP never ends the daemon: not a worker, not a primary still starting". The
 * early handler in bin/pgbell.js is installed only when argv[2] is `start`; the CLI accepts its
 * options first (`pgbell --workers 2 start`), and node:cluster forks workers with the same argv.
 * Without DATABASE_URL the start ends with code 1 after the CLI loaded: a process that survived
 * the hangup exits 1, one killed by it reports SIGHUP.
 */
import { spawn } from 'node:child_process';
import { expect, it } from 'vitest';
import { BIN, cleanEnv } from './helpers/cli.js';

async function hupWhileLoading(args: string[]): Promise<string> {
  const c = spawn(process.execPath, [BIN, ...args], { env: cleanEnv(), stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 150));
  c.kill('SIGHUP');
  return new Promise((r) => c.on('exit', (code, sig) => r(sig ?? `code ${code}`)));
}

it('a SIGHUP while the CLI loads does not kill `pgbell --workers 2 start`, as it does not kill `pgbell start --workers 2`', async () => {
  expect(await hupWhileLoading(['start', '--workers', '2'])).toBe('code 1');
  expect(await hupWhileLoading(['--workers', '2', 'start'])).toBe('code 1');
}, 30_000);
