/**
 * What a running `pgbell dev` leaves in its checkout's .pgbell/, so that a second terminal in
 * the same checkout (`npx pgbell send …`, `token`, `doctor`) finds the dev database and secret
 * with no environment set, and so that `pgbell clean` knows what to delete.
 *
 *   .pgbell/session-secret   the dev session secret (kept across runs: printed tokens stay valid)
 *   .pgbell/db-password      the embedded cluster's superuser password, random per checkout
 *   .pgbell/dev.json         written while dev runs: pid, database URL, URLs; removed on exit
 *   .pgbell/data-dir         where the embedded data lives when it is not .pgbell/data (root,
 *                            checkout out of the `postgres` user's reach)
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { Config } from '../config.js';
import { alive, removeMirroredBinaries, stopOrphan } from './embedded.js';

export const STATE_DIR = '.pgbell';

const devStateSchema = z.object({
  pid: z.number().int(),
  databaseUrl: z.string(),
  wsUrl: z.string(),
  demoUrl: z.string(),
  /** Set when dev signs with the generated .pgbell/session-secret (not SESSION_SECRET). */
  secretFile: z.string().optional(),
});
export type DevState = z.infer<typeof devStateSchema>;

export function stateDirOf(cwd: string): string {
  return path.join(cwd, STATE_DIR);
}

/** A stable per-checkout secret, so printed tokens keep working across restarts. */
export async function devSecret(stateDir: string): Promise<{ secret: string; file: string }> {
  const file = path.join(stateDir, 'session-secret');
  if (existsSync(file)) return { secret: (await readFile(file, 'utf8')).trim(), file };
  const secret = randomBytes(32).toString('base64url');
  await writeFile(file, secret + '\n', { mode: 0o600 });
  return { secret, file };
}

/**
 * The embedded cluster's superuser password: random per checkout, 0600, so no other local
 * account can connect (a superuser runs programs as the cluster's account and reads its files).
 * `stored` is false when it was just made and not yet written: the caller writes it with
 * `storeDevPassword` once the cluster accepts it.
 */
export async function devDatabasePassword(stateDir: string): Promise<{ password: string; file: string; stored: boolean }> {
  const file = path.join(stateDir, 'db-password');
  if (existsSync(file)) return { password: (await readFile(file, 'utf8')).trim(), file, stored: true };
  return { password: randomBytes(24).toString('base64url'), file, stored: false };
}

export async function storeDevPassword(file: string, password: string): Promise<void> {
  await writeFile(file, password + '\n', { mode: 0o600 });
}

/** What clusters made by earlier versions of `pgbell dev` were given, the same everywhere. */
export const LEGACY_DEV_PASSWORD = 'pgbell';

export async function writeDevState(stateDir: string, state: DevState): Promise<void> {
  await writeFile(path.join(stateDir, 'dev.json'), JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
}

export async function removeDevState(stateDir: string): Promise<void> {
  await rm(path.join(stateDir, 'dev.json'), { force: true });
}

/** The `pgbell dev` running in this directory or a parent, if any (a dead one's file is ignored). */
export async function findRunningDev(cwd: string): Promise<DevState | undefined> {
  for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
    const found = await devStateIn(path.join(dir, STATE_DIR));
    if (found) return found;
    if (path.dirname(dir) === dir) return undefined;
  }
}

async function devStateIn(stateDir: string): Promise<DevState | undefined> {
  const text = await readFile(path.join(stateDir, 'dev.json'), 'utf8').catch(() => null);
  if (text === null) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = devStateSchema.safeParse(json);
  return parsed.success && alive(parsed.data.pid) ? parsed.data : undefined;
}

/**
 * Config with DATABASE_URL and SESSION_SECRET taken from a running `pgbell dev` where the
 * environment leaves them unset. The environment always wins.
 */
export async function withRunningDev(config: Config, cwd: string): Promise<Config> {
  if (config.DATABASE_URL !== undefined && config.SESSION_SECRET !== undefined) return config;
  const dev = await findRunningDev(cwd);
  if (!dev) return config;
  const secret = config.SESSION_SECRET ?? (dev.secretFile ? (await readFile(dev.secretFile, 'utf8').catch(() => '')).trim() || undefined : undefined);
  return Object.freeze({ ...config, DATABASE_URL: config.DATABASE_URL ?? dev.databaseUrl, SESSION_SECRET: secret });
}

/** Where this checkout's embedded data lives, as recorded by dev (or the default). */
export async function recordedDataDir(stateDir: string): Promise<string> {
  const pointer = path.join(stateDir, 'data-dir');
  if (existsSync(pointer)) return (await readFile(pointer, 'utf8')).trim();
  return path.join(stateDir, 'data');
}

export async function recordDataDir(stateDir: string, dataDir: string): Promise<void> {
  const pointer = path.join(stateDir, 'data-dir');
  if (dataDir === path.join(stateDir, 'data')) await rm(pointer, { force: true });
  else await writeFile(pointer, dataDir + '\n');
}

/**
 * `pgbell clean`: deletes the checkout's dev state and embedded data (wherever it lives).
 * Refuses while dev runs; a cluster orphaned by a killed dev is shut down first.
 */
export async function clean(cwd: string): Promise<string[]> {
  const stateDir = stateDirOf(cwd);
  const running = await devStateIn(stateDir);
  if (running) {
    throw new Error(`pgbell dev is running in this checkout (pid ${running.pid}); stop it (Ctrl-C) before \`pgbell clean\``);
  }
  const removed: string[] = [];
  const dataDir = await recordedDataDir(stateDir);
  if (existsSync(dataDir)) {
    await stopOrphan(dataDir);
    await rm(dataDir, { recursive: true, force: true });
    removed.push(dataDir);
    // The relocated data's per-checkout folder, when it is now empty.
    if (path.basename(dataDir) === 'data' && path.dirname(dataDir) !== stateDir) await rm(path.dirname(dataDir), { recursive: true, force: true });
  }
  if (existsSync(stateDir)) {
    await rm(stateDir, { recursive: true, force: true });
    removed.push(stateDir);
  }
  const binaries = await removeMirroredBinaries().catch(() => undefined);
  if (binaries) removed.push(binaries);
  return removed;
}
