/**
 * With the tools apps use: the real `drizzle-kit pull` sees the same table before and after
 * `pgbell install` (pgbell adds nothing it would call drift), and writers through drizzle-orm
 * and kysely (insert, mark read, delete) stream like psql's.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { boolean, pgTable, serial, text, timestamp } from 'drizzle-orm/pg-core';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, run } from './helpers/cli.js';
import { TestClient } from './helpers/client.js';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { emptyDatabase, psql } from './helpers/pg.js';

const exec = promisify(execFile);
const DRIZZLE_KIT = join(process.cwd(), 'node_modules', '.bin', 'drizzle-kit');

let db: string;
let work: string;
const fleet = daemonFleet(() => db);

const notifications = pgTable('notifications', {
  id: serial('id').primaryKey(),
  userId: text('user_id').notNull(),
  kind: text('kind').notNull().default('info'),
  title: text('title').notNull(),
  read: boolean('read').notNull().default(false),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

/** What `drizzle-kit pull` generates for the database, as a person would run it (schema "public"). */
async function pull(name: string): Promise<Record<string, string>> {
  const out = join(work, name);
  const config = join(work, `${name}.config.mjs`);
  await writeFile(config, `export default { dialect: 'postgresql', dbCredentials: { url: ${JSON.stringify(db)} }, out: ${JSON.stringify(out)} };\n`);
  await exec(DRIZZLE_KIT, ['pull', `--config=${config}`], { cwd: work, timeout: 60_000 });
  const files: Record<string, string> = {};
  for (const f of await readdir(out)) if (f.endsWith('.ts')) files[f] = await readFile(join(out, f), 'utf8');
  return files;
}

beforeAll(async () => {
  db = await emptyDatabase('dz');
  work = await mkdtemp(join(tmpdir(), 'pgbell-drizzle-'));
  await psql(db, `
    CREATE TABLE notifications (
      id         serial PRIMARY KEY,
      user_id    text NOT NULL,
      kind       text NOT NULL DEFAULT 'info',
      title      text NOT NULL,
      read       boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX notifications_user_idx ON notifications (user_id, created_at DESC);`);
});
afterAll(async () => {
  await fleet.stopAll();
  await rm(work, { recursive: true, force: true });
});

describe('drizzle and kysely', () => {
  it('drizzle-kit pull generates the same schema before and after pgbell install', async () => {
    const before = await pull('before');
    expect(before['schema.ts']).toMatch(/notifications/);
    const r = await run(
      ['install', '--table', 'notifications', '--user-column', 'user_id', '--type-column', 'kind', '--title-column', 'title', '--read-column', 'read', '--created-column', 'created_at'],
      cleanEnv({ DATABASE_URL: db }),
    );
    expect(r.code, r.stderr).toBe(0);
    const after = await pull('after');
    expect(after).toEqual(before);
  }, 120_000);

  it('writes through drizzle-orm and kysely stream like psql: insert, mark read, delete', async () => {
    const d = await fleet.start();
    const tab = await TestClient.ready(d.url, await tokenFor('dz'));
    const pool = new pg.Pool({ connectionString: db, max: 2 });
    try {
      const orm = drizzle(pool);
      const [a] = await orm.insert(notifications).values({ userId: 'dz', title: 'from drizzle' }).returning({ id: notifications.id });
      const n = await tab.next((m) => m.type === 'notification' && m.alert.title === 'from drizzle');
      expect(n.alert).toMatchObject({ id: String(a!.id), userId: 'dz', type: 'info', read: false });
      await orm.update(notifications).set({ read: true }).where(eq(notifications.id, a!.id));
      expect((await tab.next((m) => m.type === 'update' && m.alert.id === String(a!.id))).alert.read).toBe(true);
      await orm.delete(notifications).where(eq(notifications.id, a!.id));
      await tab.next((m) => m.type === 'delete' && m.id === String(a!.id));

      interface Db {
        notifications: { id: number; user_id: string; kind: string; title: string; read: boolean; created_at: Date };
      }
      const k = new Kysely<Db>({ dialect: new PostgresDialect({ pool }) });
      const row = await k.insertInto('notifications').values({ user_id: 'dz', kind: 'billing', title: 'from kysely' } as never).returning('id').executeTakeFirstOrThrow();
      expect((await tab.next((m) => m.type === 'notification' && m.alert.title === 'from kysely')).alert).toMatchObject({ id: String(row.id), type: 'billing' });
      await k.updateTable('notifications').set({ read: true }).where('id', '=', row.id).execute();
      await tab.next((m) => m.type === 'update' && m.alert.id === String(row.id) && m.alert.read === true);
      await k.deleteFrom('notifications').where('id', '=', row.id).execute();
      await tab.next((m) => m.type === 'delete' && m.id === String(row.id));
      expect(tab.messages.at(-1).unread).toBe(0);
      // Nothing that did not belong to this user.
      expect(tab.messages.filter((m) => m.alert && m.alert.userId !== 'dz')).toEqual([]);
    } finally {
      tab.close();
      await pool.end();
    }
  });
});
