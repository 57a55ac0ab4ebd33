/**
 * pgbell never stands in the writer's way. An app writes its table with a role that has table
 * privileges only (how most apps run): after `pgbell install` or `pgbell migrate`, in every
 * mode, its INSERT, UPDATE and DELETE work exactly as before, and what it writes is delivered.
 * A row without an owner is stored and not delivered; a row whose json value Postgres's jsonb
 * refuses is delivered without its data and stops nothing else; a writer under row-level
 * security moves nothing of another tenant's through pgbell.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, run } from './helpers/cli.js';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { databaseUrl, emptyDatabase, freshDatabase, psql, query } from './helpers/pg.js';
import { MODES } from './helpers/modes.js';
import { Tab, until } from './helpers/tab.js';

let roleCount = 0;
const roles: Array<{ db: string; role: string }> = [];

/** A login role of its own (roles are the cluster's: the name is unique to this run). */
async function newRole(db: string, tag: string): Promise<{ role: string; url: string }> {
  const role = `pgbell_${tag}_${process.pid}_${++roleCount}`;
  await query(db, `CREATE ROLE ${role} LOGIN PASSWORD 'writer-pw'`);
  roles.push({ db, role });
  const u = new URL(db);
  u.username = role;
  u.password = 'writer-pw';
  return { role, url: u.toString() };
}

afterAll(async () => {
  for (const { db, role } of roles.reverse()) {
    await query(db, `DROP OWNED BY ${role}`).catch(() => {});
    await query(db, `DROP ROLE IF EXISTS ${role}`).catch(() => {});
  }
});

/** The id of the one row a statement returns. */
const insertedId = async (url: string, sql: string, params: unknown[] = []) => String((await query(url, sql, params))[0]!.id);

/** Every message a tab is sent, as parsed JSON. */
function record(tab: Tab): any[] {
  const got: any[] = [];
  tab.client!.ws.on('message', (d) => got.push(JSON.parse(String(d))));
  return got;
}
const alertsOf = (msgs: any[]) => msgs.flatMap((m) => (m.type === 'notification' || m.type === 'update' ? [m.alert] : m.type === 'notifications' ? m.alerts : []));

describe.each(Object.keys(MODES) as Array<keyof typeof MODES>)('%s mode', (mode) => {
  const env = (db: string) => cleanEnv({ DATABASE_URL: db, PGBELL_MODE: mode, SESSION_SECRET: 'x'.repeat(32) });

  describe('an installed table (the recipe: a role with table privileges only)', () => {
    let db: string;
    let writer: string;
    const fleet = daemonFleet(() => db);
    afterAll(() => fleet.stopAll());

    beforeAll(async () => {
      db = await emptyDatabase('wr');
      await psql(db, `CREATE TABLE public.notifications (id bigserial PRIMARY KEY, owner_id text, title text, body text, extra json, created_at timestamptz DEFAULT now())`);
      const w = await newRole(db, 'appwriter');
      writer = w.url;
      await psql(db, `GRANT SELECT, INSERT, UPDATE, DELETE ON public.notifications TO ${w.role}; GRANT USAGE ON SEQUENCE notifications_id_seq TO ${w.role}`);
      // Before install: the app's writes work.
      await query(writer, `INSERT INTO public.notifications(owner_id, title, body) VALUES ('u1', 'before', 'install')`);
      const r = await run(['install', '--table', 'public.notifications', '--user-column', 'owner_id', '--title-column', 'title', '--message-column', 'body', '--created-column', 'created_at'], env(db));
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/triggers run as role \S+ \(SECURITY DEFINER\)/);
    });

    it('the writer inserts, updates and deletes as before; what it writes is delivered; a NULL owner is stored and not delivered', async () => {
      const d = await fleet.start(MODES[mode]);
      const tab = await new Tab(await tokenFor('u1')).connect(d.url);
      const other = await new Tab(await tokenFor('u2')).connect(d.url);
      const a = await insertedId(writer, `INSERT INTO public.notifications(owner_id, title, body) VALUES ('u1', 'hi', 'there') RETURNING id::text`);
      const orphan = await insertedId(writer, `INSERT INTO public.notifications(owner_id, title, body) VALUES (NULL, 'hi', 'there') RETURNING id::text`);
      await until(() => tab.ids.has(a), 10_000, 'the writer\'s alert');
      await query(writer, `UPDATE public.notifications SET body = 'changed' WHERE id = $1`, [a]);
      await until(() => tab.updates.some((u) => u.alert.id === a && u.alert.message === 'changed'), 10_000, 'the update');
      // An owner given later: a new alert for that owner. An owner taken away: a delete.
      await query(writer, `UPDATE public.notifications SET owner_id = 'u1' WHERE id = $1`, [orphan]);
      await until(() => tab.ids.has(orphan), 10_000, 'the alert that got an owner');
      await query(writer, `UPDATE public.notifications SET owner_id = NULL WHERE id = $1`, [orphan]);
      await until(() => tab.deleted.has(orphan), 10_000, 'the delete when the owner went');
      await query(writer, `DELETE FROM public.notifications WHERE id = $1`, [a]);
      await until(() => tab.deleted.has(a), 10_000, 'the delete');
      // A bulk insert with owners and without, as one statement.
      const bulk = await query(writer, `INSERT INTO public.notifications(owner_id, title) SELECT CASE WHEN g % 2 = 0 THEN 'u1' END, 'bulk ' || g FROM generate_series(1, 10) g RETURNING id::text, owner_id`);
      const owned = bulk.filter((r) => r.owner_id === 'u1').map((r) => r.id);
      await until(() => owned.every((id) => tab.ids.has(id)), 10_000, 'the bulk insert\'s owned rows');
      for (const r of bulk.filter((r) => r.owner_id === null)) expect(tab.ids.has(r.id)).toBe(false);
      expect(other.ids.size).toBe(0);
      // The app's rows are all there, as it wrote them.
      expect((await query(db, `SELECT count(*)::int AS n FROM public.notifications WHERE owner_id IS NULL`))[0]!.n).toBe(6);
      const doctor = await run(['doctor'], env(db));
      expect(doctor.stdout).toMatch(/✓ undelivered rows: 6 rows have no owner \(owner_id IS NULL\): stored, never sent/);
      tab.close();
      other.close();
    });

    it('a json value that jsonb refuses (\\u0000): the row is delivered without its data, every other row of its transaction and later ones as usual, live and on resume', async () => {
      const d = await fleet.start(MODES[mode]);
      const tab = await new Tab(await tokenFor('u3')).connect(d.url);
      const before = tab.cursor;
      const got = record(tab);
      const rows = await query(
        writer,
        `INSERT INTO public.notifications(owner_id, title, extra) VALUES ('u3', 'good 1', '{"a":1}'), ('u3', 'bad', '{"a":"\\u0000"}'), ('u3', 'good 2', NULL) RETURNING id::text, title`,
      );
      const ids = Object.fromEntries(rows.map((r) => [r.title, r.id]));
      await until(() => rows.every((r) => tab.ids.has(r.id)), 10_000, 'the three rows');
      const live = alertsOf(got);
      expect(live.find((x) => x.id === ids.bad).data).toBeNull();
      expect(live.find((x) => x.id === ids['good 1']).data).toMatchObject({ title: 'good 1', extra: { a: 1 } });
      // The writer updates the row: its trigger compares rows without to_jsonb.
      await query(writer, `UPDATE public.notifications SET body = 'seen' WHERE id = $1`, [ids.bad]);
      const later = await insertedId(writer, `INSERT INTO public.notifications(owner_id, title) VALUES ('u3', 'later') RETURNING id::text`);
      await until(() => tab.ids.has(later), 10_000, 'a later transaction');
      await until(() => tab.updates.some((u) => u.alert.id === ids.bad && u.alert.message === 'seen'), 10_000, 'the update of the row');
      tab.close();
      // A resume from before all of it gets every row.
      const resumed = new Tab(await tokenFor('u3'));
      resumed.cursor = before;
      await resumed.connect(d.url);
      await until(() => [...rows.map((r) => r.id), later].every((id) => resumed.ids.has(id)), 10_000, 'every row on resume');
      // And the list read.
      const res = await fetch(`${d.http}/alerts`, { headers: { authorization: `Bearer ${await tokenFor('u3')}` } });
      expect(res.status).toBe(200);
      const list = (await res.json()) as any;
      expect(list.alerts.map((x: any) => x.id).sort()).toEqual([...rows.map((r) => r.id), later].sort());
      resumed.close();
    });
  });

  describe('pgbell migrate\'s own "Alert", written by a role with table privileges only', () => {
    let db: string;
    const fleet = daemonFleet(() => db);
    afterAll(() => fleet.stopAll());

    it('inserts, updates and deletes work and are delivered', async () => {
      db = await freshDatabase(['ann']);
      const r = await run(['migrate'], env(db));
      expect(r.code).toBe(0);
      const w = await newRole(db, 'appwriter');
      await psql(db, `GRANT SELECT, INSERT, UPDATE, DELETE ON "Alert" TO ${w.role}; GRANT SELECT ON "User" TO ${w.role}`);
      const d = await fleet.start(MODES[mode]);
      const tab = await new Tab(await tokenFor('ann')).connect(d.url);
      const id = await insertedId(w.url, `INSERT INTO "Alert" ("userId", title) VALUES ('ann', 'from the app') RETURNING id`);
      await until(() => tab.ids.has(id), 10_000, 'the app role\'s insert');
      await query(w.url, `UPDATE "Alert" SET read = true WHERE id = $1`, [id]);
      await until(() => tab.updates.some((u) => u.alert.id === id && u.alert.read === true), 10_000, 'the update');
      await query(w.url, `DELETE FROM "Alert" WHERE id = $1`, [id]);
      await until(() => tab.deleted.has(id), 10_000, 'the delete');
      tab.close();
    });
  });
});

describe('a writer gains nothing through pgbell', () => {
  let db: string;
  beforeAll(async () => {
    db = await emptyDatabase('rls');
    await psql(db, `
      CREATE TABLE public.notes (id bigserial PRIMARY KEY, tenant text NOT NULL, owner_id text, title text);
      ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
      CREATE POLICY own_tenant ON public.notes USING (tenant = current_user) WITH CHECK (tenant = current_user);`);
    const r = await run(['install', '--table', 'public.notes', '--user-column', 'owner_id', '--title-column', 'title'], cleanEnv({ DATABASE_URL: db }));
    expect(r.code).toBe(0);
  });

  it('under row-level security, a tenant\'s statements move only its own rows\' bookkeeping', async () => {
    const a = await newRole(db, 'tenant');
    const b = await newRole(db, 'tenant');
    for (const t of [a, b]) await psql(db, `GRANT SELECT, INSERT, UPDATE, DELETE ON public.notes TO ${t.role}; GRANT USAGE ON SEQUENCE notes_id_seq TO ${t.role}`);
    await query(a.url, `INSERT INTO public.notes (tenant, owner_id, title) VALUES ('${a.role}', 'ua', 'a''s')`);
    const bs = await insertedId(b.url, `INSERT INTO public.notes (tenant, owner_id, title) VALUES ('${b.role}', 'ub', 'b''s') RETURNING id::text`);
    const bookkeeping = () => query(db, `SELECT id, "userId", "changedTxid"::text AS tx FROM pgbell."AlertChange" WHERE id = $1`, [bs]);
    const before = await bookkeeping();
    // Tenant A rewrites every row it can: B's row is not among them, and B's alert stays B's.
    await query(a.url, `UPDATE public.notes SET owner_id = 'ua2', title = 'moved'`);
    await query(a.url, `DELETE FROM public.notes`);
    expect(await bookkeeping()).toEqual(before);
    // Nothing of pgbell's is reachable by a writer directly.
    for (const sql of [
      `INSERT INTO pgbell."AlertChange" (key, id, "userId", type, read, "createdAt", txid, "changedTxid") VALUES (999, '999', 'ub', 'x', false, now(), '3', '3')`,
      `UPDATE pgbell."AlertChange" SET "userId" = 'ua'`,
      `SELECT pgbell.pgbell_notify_change('pgbell')`,
    ]) {
      await expect(query(a.url, sql)).rejects.toThrow(/permission denied/);
    }
  });

  it('install refuses an id column that may be NULL, in one line, and changes nothing', async () => {
    const e = await emptyDatabase('nid');
    await psql(e, `CREATE TABLE public.n (ref text UNIQUE, owner_id text)`);
    const r = await run(['install', '--table', 'public.n', '--user-column', 'owner_id', '--id-column', 'ref'], cleanEnv({ DATABASE_URL: e }));
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--id-column: column "ref" of public\.n may be NULL/);
    expect((await query(e, `SELECT to_regnamespace('pgbell') IS NULL AS gone`))[0]!.gone).toBe(true);
  });
});

void databaseUrl;
