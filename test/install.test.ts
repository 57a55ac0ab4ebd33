/**
 * `pgbell install` onto a table pgbell did not create: other names, other types (bigint ids,
 * uuid user ids, a `kind` column), written by psql, delivered with the same guarantees as
 * pgbell's own "Alert"; `pgbell uninstall` leaves the catalog as it found it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, cleanEnv } from './helpers/cli.js';
import { TestClient } from './helpers/client.js';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { emptyDatabase, freshDatabase, psql, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

const ADA = '0a0a0a0a-0000-4000-8000-00000000000a';
const BOB = '0b0b0b0b-0000-4000-8000-00000000000b';

let db: string;
const fleet = daemonFleet(() => db);

const INSTALL = ['install', '--table', 'app.notifications', '--user-column', 'owner_id', '--type-column', 'kind', '--title-column', 'subject', '--message-column', 'body', '--read-column', 'seen', '--created-column', 'created_at'];
const cli = (args: string[], env: Record<string, string> = {}) => run(args, cleanEnv({ DATABASE_URL: db, ...env }));

/** Everything in the catalog install could touch: the table's columns, indexes and triggers, schemas, functions. */
async function catalog(): Promise<string[]> {
  const rows = await query<{ x: string }>(db, `
    SELECT 'column ' || attname || ' ' || format_type(atttypid, atttypmod) || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS x
      FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE attrelid = 'app.notifications'::regclass AND attnum > 0 AND NOT attisdropped
    UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'app'
    UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid = 'app.notifications'::regclass
    UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
    UNION ALL SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    UNION ALL SELECT 'relation ' || n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    ORDER BY 1`);
  return rows.map((r) => r.x);
}

async function committedIds(owner: string): Promise<Set<string>> {
  return new Set((await query<{ id: string }>(db, 'SELECT id::text AS id FROM app.notifications WHERE owner_id = $1', [owner])).map((r) => r.id));
}

let before: string[];
let fileBefore: string;
let constraintsBefore: string[];
const relfilenode = async () => (await query(db, `SELECT relfilenode::text AS f FROM pg_class WHERE oid = 'app.notifications'::regclass`))[0]!.f as string;
const constraints = async () => (await query(db, `SELECT conname || ' ' || pg_get_constraintdef(oid) AS c FROM pg_constraint WHERE conrelid = 'app.notifications'::regclass ORDER BY 1`)).map((r) => r.c as string);

beforeAll(async () => {
  db = await emptyDatabase('inst');
  await psql(db, `
    CREATE SCHEMA app;
    CREATE TABLE app.notifications (
      id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      owner_id   uuid NOT NULL,
      kind       text NOT NULL DEFAULT 'info',
      subject    text NOT NULL,
      body       text,
      seen       boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    -- The app's own trigger: it keeps working beside pgbell's.
    CREATE FUNCTION app.default_body() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.body := coalesce(NEW.body, 'set by the app'); RETURN NEW; END $$;
    CREATE TRIGGER app_default_body BEFORE INSERT ON app.notifications FOR EACH ROW EXECUTE FUNCTION app.default_body();
    INSERT INTO app.notifications (owner_id, subject) VALUES ('${ADA}', 'from before the install');`);
  before = await catalog();
  fileBefore = await relfilenode();
  constraintsBefore = await constraints();
  const first = await cli(INSTALL);
  expect(first.stderr).toBe('');
  expect(first.stdout).toMatch(/installed on app\.notifications/);
  expect(first.code).toBe(0);
});
afterAll(() => fleet.stopAll());

describe('pgbell install', () => {
  it('adds only its triggers to the table: the same columns, defaults, indexes and constraints, and no rewrite', async () => {
    const now = await catalog();
    const onTable = (xs: string[]) => xs.filter((x) => /^(column|index) /.test(x));
    expect(onTable(now)).toEqual(onTable(before));
    expect(now.filter((x) => x.startsWith('trigger ') && !before.includes(x))).toEqual(['trigger pgbell_delete', 'trigger pgbell_insert', 'trigger pgbell_truncate', 'trigger pgbell_update']);
    // Everything else it added lives in schema pgbell.
    for (const x of now.filter((x) => !before.includes(x) && !x.startsWith('trigger '))) expect(x).toMatch(/^(schema pgbell|function pgbell\.|relation pgbell\.)/);
    expect(await relfilenode()).toBe(fileBefore);
    expect(await constraints()).toEqual(constraintsBefore);
  });

  it('is idempotent: a second run changes nothing and says so', async () => {
    const once = await catalog();
    const again = await cli(INSTALL);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/already installed on app\.notifications; nothing to do/);
    expect(await catalog()).toEqual(once);
    // What it added is named so it cannot be mistaken for the app's own.
    const added = once.filter((x) => !before.includes(x));
    for (const x of added) expect(x).toMatch(/pgbell/);
  });

  it('delivers a psql INSERT to the owner only, in pgbell\'s shape, with the row as data', async () => {
    const d = await fleet.start();
    const ada = await TestClient.connect(d.url);
    const bob = await TestClient.connect(d.url);
    ada.send({ type: 'auth', token: await tokenFor(ADA) });
    bob.send({ type: 'auth', token: await tokenFor(BOB) });
    expect(await ada.next((m) => m.type === 'ready')).toMatchObject({ userId: ADA, unread: 1 });
    await bob.next((m) => m.type === 'ready');

    await psql(db, `INSERT INTO app.notifications (owner_id, kind, subject, body) VALUES ('${ADA}', 'billing', 'Invoice paid', 'Thanks!')`);
    const n = await ada.next((m) => m.type === 'notification');
    expect(n.alert).toMatchObject({ userId: ADA, type: 'billing', title: 'Invoice paid', message: 'Thanks!', read: false, link: null });
    await psql(db, `INSERT INTO app.notifications (owner_id, subject) VALUES ('${ADA}', 'no body given')`);
    expect((await ada.next((m) => m.type === 'notification' && m.alert.title === 'no body given')).alert.message).toBe('set by the app');
    expect(n.alert.id).toMatch(/^\d+$/);
    expect(n.alert.data).toMatchObject({ id: Number(n.alert.id), owner_id: ADA, kind: 'billing', subject: 'Invoice paid', seen: false });
    expect(Object.keys(n.alert.data).filter((k) => k.startsWith('pgbell'))).toEqual([]);
    expect(n.unread).toBe(2);
    expect(ada.messages.at(-1).unread).toBe(3);

    // Mark read over the socket writes the table's own boolean; the UPDATE streams back.
    ada.send({ type: 'read', ids: [n.alert.id] });
    const u = await ada.next((m) => m.type === 'update');
    expect(u.alert).toMatchObject({ id: n.alert.id, read: true });
    expect((await query(db, 'SELECT seen FROM app.notifications WHERE id = $1', [n.alert.id]))[0]!.seen).toBe(true);

    await psql(db, `DELETE FROM app.notifications WHERE id = ${n.alert.id}`);
    expect(await ada.next((m) => m.type === 'delete')).toMatchObject({ id: n.alert.id });

    await psql(db, `INSERT INTO app.notifications (owner_id, subject) VALUES ('${BOB}', 'for bob')`);
    expect((await bob.next((m) => m.type === 'notification')).alert).toMatchObject({ userId: BOB, title: 'for bob', type: 'info' });
    await new Promise((r) => setTimeout(r, 200));
    expect(new Set(ada.of('notification').map((m) => m.alert.userId))).toEqual(new Set([ADA]));
    expect(bob.of('notification').map((m) => m.alert.userId)).toEqual([BOB]);
    ada.close();
    bob.close();
  });

  it('serves GET /alerts from the table: the list, then polling by cursor', async () => {
    const d = await fleet.start();
    const auth = { authorization: `Bearer ${await tokenFor(ADA)}` };
    const list = (await (await fetch(`${d.http}/alerts?limit=50`, { headers: auth })).json()) as any;
    expect(new Set(list.alerts.map((a: any) => a.id))).toEqual(await committedIds(ADA));
    expect(list.alerts[0].createdAt >= list.alerts.at(-1).createdAt).toBe(true);
    await psql(db, `INSERT INTO app.notifications (owner_id, subject) VALUES ('${ADA}', 'polled')`);
    const polled = (await (await fetch(`${d.http}/alerts?after=${encodeURIComponent(list.cursor)}`, { headers: auth })).json()) as any;
    expect(polled.alerts.map((a: any) => a.title)).toEqual(['polled']);
  });

  it.each(['notify', 'wal'] as const)('loses nothing in %s mode: writers through a dropped tab, a stopped daemon and a killed listener; every tab ends with exactly its user\'s rows', async (mode) => {
    if (mode === 'wal') {
      const r = await cli(INSTALL, { PGBELL_MODE: 'wal' });
      expect(r.stdout).toMatch(/triggers now send no NOTIFY \(WAL mode\), and publication pgbell is there/);
    }
    const d1 = await fleet.start({ mode });
    const d2 = await fleet.start({ mode });
    const tabs = [new Tab(await tokenFor(ADA)), new Tab(await tokenFor(BOB)), new Tab(await tokenFor(ADA))];
    // Tabs that connect without a cursor start from now: what was committed earlier is not theirs to get.
    const earlier = new Set([...(await committedIds(ADA)), ...(await committedIds(BOB))]);
    await Promise.all(tabs.map((t, i) => t.connect((i === 1 ? d2 : d1).url)));
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) await query(db, 'INSERT INTO app.notifications (owner_id, subject) VALUES ($1, $2)', [i % 2 ? BOB : ADA, `w${i}`]);
    })();
    const count = async () => Number((await query(db, 'SELECT count(*) AS n FROM app.notifications'))[0]!.n);
    const start = await count();

    await until(async () => (await count()) > start + 40, 10_000, 'writes');
    tabs[0]!.drop();
    await until(async () => (await count()) > start + 80, 10_000, 'writes while dropped');
    await tabs[0]!.connect(d2.url);
    await query(db, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND (query ILIKE 'LISTEN%' OR application_name = 'pgbell-listener')`);
    await until(async () => (await count()) > start + 120, 10_000, 'writes after the listener kill');
    await d1.stop();
    await until(async () => (await count()) > start + 160, 10_000, 'writes after the daemon stopped');
    await tabs[2]!.connect(d2.url);
    stop = true;
    await writer;
    for (const [t, owner] of [[tabs[0]!, ADA], [tabs[1]!, BOB], [tabs[2]!, ADA]] as const) {
      const want = new Set([...(await committedIds(owner))].filter((id) => !earlier.has(id)));
      await until(() => [...want].every((id) => t.ids.has(id)), 10_000, `every ${owner} row`).catch(async (err: Error) => {
        const missing = [...want].filter((id) => !t.ids.has(id));
        const rows = await query(db, `SELECT n.id::text, c.txid::text, c."changedTxid"::text FROM app.notifications n JOIN pgbell."AlertChange" c ON c.key = n.id WHERE n.id::text = ANY($1)`, [missing]);
        const logs = [d1, d2].flatMap((d) => d.logs.lines.filter((l) => l.level >= 40 || /catch|replay|resumed|reconnect|stream/.test(l.msg)).map((l) => `${d.port}: ${l.msg} ${l.err ?? ''}`));
        throw new Error(`${err.message}: missing ${JSON.stringify(rows)}; cursor ${t.cursor}; logs ${logs.slice(-20).join(' | ')}`);
      });
      expect(t.ids).toEqual(want);
      expect(t.repeatsWithinConnection).toEqual([]);
      expect(t.resets).toBe(0);
      t.close();
    }
    await d2.stop();
    if (mode === 'wal') {
      // Back to notify mode for the tests below (a deliberate switch): the publication goes with WAL mode.
      const r = await cli(INSTALL, { PGBELL_MODE: 'notify' });
      expect(r.stdout).toMatch(/its triggers now notify channel pgbell/);
      expect(await query(db, `SELECT 1 FROM pg_publication WHERE pubname = 'pgbell'`)).toEqual([]);
    }
  });

  it('refuses bad input with a message naming what is wrong', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['install', '--table', 'app.nope', '--user-column', 'owner_id'], /--table: no table "app.nope"/],
      [['install', '--table', 'app.notifications', '--user-column', 'owner'], /--user-column: table app.notifications has no column "owner" \(it has id, owner_id/],
      [['install', '--table', 'app.notifications', '--user-column', 'owner_id', '--read-column', 'subject'], /--read-column: column "subject" is text; it must be boolean/],
      [['install', '--table', 'app.notifications'], /usage: pgbell install --table/],
      [['install', '--table', 'app.notifications', '--user-column', 'owner_id'], /already installed on app.notifications with other options; run `pgbell uninstall` first/],
      [['migrate'], /pgbell is installed on app.notifications/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(args);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.code).toBe(1);
    }
    const own = await freshDatabase();
    const r = await run(['install', '--table', '"Alert"', '--user-column', 'userId'], cleanEnv({ DATABASE_URL: own }));
    expect(r.stderr).toMatch(/pgbell's own "Alert" table/);
  });

  it('moves the channel when run again with --channel; the daemon checks it', async () => {
    const moved = await cli([...INSTALL, '--channel', 'bells']);
    expect(moved.stdout).toMatch(/now notify channel bells/);
    await expect(fleet.start()).rejects.toThrow(/notifies channel "bells" but PGBELL_CHANNEL is "pgbell"/);
    const d = await fleet.start({ channel: 'bells' });
    const t = await new Tab(await tokenFor(BOB)).connect(d.url);
    const id = (await query<{ id: string }>(db, `INSERT INTO app.notifications (owner_id, subject) VALUES ('${BOB}', 'on bells') RETURNING id::text AS id`))[0]!.id;
    await until(() => t.ids.has(id), 5000, 'the alert on the moved channel');
    t.close();
    await fleet.stopAll();
  });

  it('uninstall removes exactly what install added, keeps the rows, and is idempotent', async () => {
    const rows = await query(db, 'SELECT id, owner_id, subject FROM app.notifications ORDER BY id');
    const r = await cli(['uninstall']);
    expect(r.stdout).toMatch(/uninstalled from app.notifications/);
    expect(await catalog()).toEqual(before);
    expect(await query(db, 'SELECT id, owner_id, subject FROM app.notifications ORDER BY id')).toEqual(rows);
    const again = await cli(['uninstall']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/not installed/);
    // And the table takes writes as it did before.
    await psql(db, `INSERT INTO app.notifications (owner_id, subject) VALUES ('${ADA}', 'after uninstall')`);
  });
});

describe('pgbell install with only --table and --user-column', () => {
  let minimal: string;
  const fleet2 = daemonFleet(() => minimal);
  afterAll(() => fleet2.stopAll());

  it('numeric user ids, no read column: delivered with defaults; marking read says why it cannot; uninstall restores', async () => {
    minimal = await emptyDatabase('inst');
    await psql(minimal, `CREATE TABLE events (event_id bigserial PRIMARY KEY, account bigint NOT NULL, payload jsonb)`);
    const env = cleanEnv({ DATABASE_URL: minimal });
    const columns = async () => (await query<{ c: string }>(minimal, `SELECT attname AS c FROM pg_attribute WHERE attrelid = 'events'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`)).map((r) => r.c);
    const original = await columns();
    const r = await run(['install', '--table', 'events', '--user-column', 'account'], env);
    expect(r.stdout).toMatch(/installed on public\.events/);
    expect(await columns()).toEqual(original);

    const d = await fleet2.start();
    const c = await TestClient.connect(d.url);
    c.send({ type: 'auth', token: await tokenFor('42') });
    await c.next((m) => m.type === 'ready');
    await psql(minimal, `INSERT INTO events (account, payload) VALUES (42, '{"k": 1}'), (7, '{"k": 2}')`);
    const n = await c.next((m) => m.type === 'notification');
    expect(n.alert).toMatchObject({ userId: '42', type: 'general', title: '', message: '', read: false, data: { account: 42, payload: { k: 1 } } });
    // Without a creation time column, the time pgbell first saw the row.
    expect(Math.abs(Date.parse(n.alert.createdAt) - Date.now())).toBeLessThan(60_000);
    c.send({ type: 'read', ids: [n.alert.id] });
    expect(await c.next((m) => m.type === 'error')).toMatchObject({ code: 'read_not_tracked' });
    const res = await fetch(`${d.http}/alerts/read`, { method: 'POST', headers: { authorization: `Bearer ${await tokenFor('42')}`, 'content-type': 'application/json' }, body: '{"all":true}' });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: 'read_not_tracked' });
    c.send({ type: 'ping' });
    await c.next((m) => m.type === 'pong');
    c.close();
    await fleet2.stopAll();

    expect((await run(['uninstall'], env)).code).toBe(0);
    expect(await columns()).toEqual(original);
  });
});

describe('pgbell install, refused or given odd names', () => {
  const fleet3 = daemonFleet(() => odd);
  let odd: string;
  afterAll(() => fleet3.stopAll());

  it('a refused install changes nothing: WAL mode on a table without a primary key leaves no trigger, no schema pgbell, no publication', async () => {
    const e = await emptyDatabase('inst');
    await psql(e, `CREATE TABLE keyless (id bigint NOT NULL UNIQUE, owner text)`);
    const r = await run(['install', '--table', 'keyless', '--user-column', 'owner', '--id-column', 'id'], cleanEnv({ DATABASE_URL: e, PGBELL_MODE: 'wal' }));
    expect(r.stderr).toMatch(/^pgbell: WAL mode publishes public\.keyless, which has no replica identity/);
    expect(r.code).toBe(1);
    expect(await query(e, `SELECT tgname FROM pg_trigger WHERE tgrelid = 'keyless'::regclass`)).toEqual([]);
    expect(await query(e, `SELECT nspname FROM pg_namespace WHERE nspname = 'pgbell'`)).toEqual([]);
    expect(await query(e, `SELECT pubname FROM pg_publication`)).toEqual([]);
    // In notify mode the same table installs.
    expect((await run(['install', '--table', 'keyless', '--user-column', 'owner', '--id-column', 'id'], cleanEnv({ DATABASE_URL: e }))).code).toBe(0);
  });

  it('names holding $$ or $pgbell$ stay names: the install works, nothing in them runs, and a writer\'s insert is delivered', async () => {
    odd = await emptyDatabase('inst');
    const owner = 'o$$; DROP TABLE sentinel; --';
    const title = 't$pgbell$; DROP TABLE sentinel; --';
    await psql(odd, `CREATE TABLE sentinel (); CREATE TABLE "n$$" (id bigserial PRIMARY KEY, "${owner}" text, "${title}" text)`);
    const r = await run(['install', '--table', 'public."n$$"', '--user-column', owner, '--title-column', title], cleanEnv({ DATABASE_URL: odd }));
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/installed on public\.n\$\$/);
    expect(await query(odd, `SELECT to_regclass('sentinel') IS NOT NULL AS here`)).toEqual([{ here: true }]);
    const d = await fleet3.start();
    const c = await TestClient.connect(d.url);
    c.send({ type: 'auth', token: await tokenFor('ada') });
    await c.next((m) => m.type === 'ready');
    await psql(odd, `INSERT INTO "n$$" ("${owner}", "${title}") VALUES ('ada', 'odd but fine')`);
    expect((await c.next((m) => m.type === 'notification')).alert).toMatchObject({ userId: 'ada', title: 'odd but fine' });
    c.close();
    await fleet3.stopAll();
    expect(await query(odd, `SELECT to_regclass('sentinel') IS NOT NULL AS here`)).toEqual([{ here: true }]);
  });
});
