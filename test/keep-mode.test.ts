/**
 * A bare `migrate`, `install` or `doctor` (no PGBELL_MODE), as in a second terminal beside
 * `PGBELL_MODE=wal pgbell dev`, keeps the mode and channel the database is in; PGBELL_MODE
 * switches it, and says so.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanEnv, run } from './helpers/cli.js';
import { emptyDatabase, freshDatabase, psql, query } from './helpers/pg.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A checkout where `pgbell dev` runs on `db` (this process stands in for it: its pid is alive). */
async function besideDev(db: string): Promise<string> {
  const cwd = await mkdtemp(path.join(os.tmpdir(), 'pgbell-keep-'));
  dirs.push(cwd);
  await mkdir(path.join(cwd, '.pgbell'));
  await writeFile(path.join(cwd, '.pgbell', 'dev.json'), JSON.stringify({ pid: process.pid, databaseUrl: db, wsUrl: 'ws://127.0.0.1:1/', demoUrl: 'http://127.0.0.1:1/' }));
  return cwd;
}

const state = async (db: string) => ({
  channel: (await query<{ c: string }>(db, 'SELECT channel AS c FROM pgbell.install'))[0]!.c,
  publication: (await query(db, `SELECT 1 FROM pg_publication WHERE pubname = 'pgbell'`)).length === 1,
});

describe('the mode a bare command uses', () => {
  it('migrate beside a WAL-mode dev keeps WAL mode (triggers without NOTIFY, the publication); PGBELL_MODE=notify switches and says so', async () => {
    const db = await freshDatabase();
    expect((await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'wal' }))).code).toBe(0);
    const cwd = await besideDev(db);
    const bare = await run(['migrate'], cleanEnv(), { cwd });
    expect(bare.stderr).toBe('');
    expect(bare.code).toBe(0);
    expect(bare.stdout).not.toMatch(/switched|dropped publication|notifies channel/);
    expect(await state(db)).toEqual({ channel: '', publication: true });

    const doctor = await run(['doctor'], cleanEnv(), { cwd });
    expect(doctor.stdout).toMatch(/✓ triggers: send no NOTIFY/);
    expect(doctor.stdout).toMatch(/✓ publication/);

    const switched = await run(['migrate'], cleanEnv({ PGBELL_MODE: 'notify' }), { cwd });
    expect(switched.code).toBe(0);
    expect(switched.stdout).toMatch(/^switched from WAL mode to notify mode \(PGBELL_MODE=notify\): daemons on this database must run with PGBELL_MODE=notify$/m);
    expect(await state(db)).toEqual({ channel: 'pgbell', publication: false });
  });

  it('migrate keeps poll mode, and a notify-mode database its channel', async () => {
    const db = await freshDatabase();
    expect((await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'poll' }))).code).toBe(0);
    expect((await run(['migrate'], cleanEnv({ DATABASE_URL: db }))).code).toBe(0);
    expect(await state(db)).toEqual({ channel: '', publication: false });
    expect((await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'notify', PGBELL_CHANNEL: 'bells' }))).code).toBe(0);
    expect((await run(['migrate'], cleanEnv({ DATABASE_URL: db }))).code).toBe(0);
    expect(await state(db)).toEqual({ channel: 'bells', publication: false });
  });

  it('install run again bare keeps WAL mode', async () => {
    const db = await emptyDatabase('keep');
    await psql(db, 'CREATE TABLE notes (id bigserial PRIMARY KEY, owner text, title text)');
    const args = ['install', '--table', 'notes', '--user-column', 'owner', '--title-column', 'title'];
    expect((await run(args, cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'wal' }))).code).toBe(0);
    const bare = await run(args, cleanEnv(), { cwd: await besideDev(db) });
    expect(bare.code).toBe(0);
    expect(bare.stdout).toMatch(/already installed on public\.notes; nothing to do/);
    expect(await state(db)).toEqual({ channel: '', publication: true });
  });
});
