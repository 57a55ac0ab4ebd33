/**
 * Upgrading in place from version 1, where pgbell kept its bookkeeping in columns of the alerts
 * table, to schema pgbell: `pgbell migrate` on a database migrated by 000001–000008, and
 * `pgbell install` run again on a table an older pgbell installed onto. With writers running
 * throughout, the data is kept, the tables end up as the model (or as the app had them), and a
 * cursor handed out before the upgrade resumes exactly: no reset, no gap, no repeat.
 */
import { readdirSync, readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { CursorState } from '../src/delivery/cursor.js';
import { BOOKKEEPING_STEP, migrate, SQL_DIR } from '../src/db/migrate.js';
import { cleanEnv, run } from './helpers/cli.js';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { emptyDatabase, psql, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let db: string;
const fleet = daemonFleet(() => db);
afterAll(() => fleet.stopAll());

/**
 * What a daemon of version 1 handed out after `seenSql`'s transactions (the table's txid
 * columns and its tombstones'): the database id, the snapshot's xmin as the horizon and those
 * transactions above it. The xmin is the whole cluster's: a transaction open in another
 * database holds it below this one's own.
 */
async function cursorOfVersion1(url: string, state: string, seenSql: string): Promise<string> {
  const [row] = await query(
    url,
    `SELECT st."databaseId" || '-' || substr(md5((SELECT system_identifier FROM pg_control_system())::text || '/' || (SELECT oid FROM pg_database WHERE datname = current_database())::text), 1, 6) AS id,
            pg_snapshot_xmin(pg_current_snapshot())::text AS h FROM ${state} st`,
  );
  const seen = await query<{ t: string }>(url, `SELECT DISTINCT t::text AS t FROM (${seenSql}) s (t) WHERE t >= $1::xid8`, [row!.h]);
  return new CursorState(BigInt(row!.h), seen.map((r) => BigInt(r.t))).encode(row!.id);
}

/**
 * Holds a transaction id open (in database `url`'s cluster) until released, as another
 * database's long transaction would: the snapshot's xmin stays below everything after it.
 */
async function holdXmin(url: string): Promise<() => Promise<void>> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query('BEGIN');
  await c.query('SELECT pg_current_xact_id()');
  return async () => {
    await c.query('COMMIT');
    await c.end();
  };
}

/** Inserts, marks read and deletes for `users` until stopped; what it committed, by user. */
function writer(url: string, table: string, userCol: string, users: string[], extra: (i: number) => string) {
  let stop = false;
  const inserted = new Map<string, string>();
  const deleted = new Set<string>();
  const done = (async () => {
    for (let i = 0; !stop; i++) {
      const user = users[i % users.length]!;
      const id = (await query<{ id: string }>(url, `INSERT INTO ${table} (${userCol}, ${extra(i)}) RETURNING id::text AS id`, [user]))[0]!.id;
      inserted.set(id, user);
      if (i % 5 === 2) await query(url, `DELETE FROM ${table} WHERE id::text = $1`, [id]).then(() => deleted.add(id));
      if (i % 7 === 3) await query(url, `UPDATE ${table} SET ${table.includes('Alert') ? 'read' : 'seen'} = true WHERE id::text = $1`, [id]);
    }
  })();
  // A writer that fails (a deadlock with the upgrade, say) fails the test: at stop(), or as soon
  // as the test waits for more writes.
  let failure: unknown = null;
  done.catch((err) => (failure = err));
  return {
    inserted,
    /** More than `n` inserts; throws the writer's error if it failed. */
    wrote(n: number): boolean {
      if (failure) throw failure;
      return inserted.size > n;
    },
    deleted,
    async stop() {
      stop = true;
      await done;
    },
    /** Ids a tab of `user` resuming from before the writer started must end with. */
    expected(user: string): Set<string> {
      return new Set([...inserted].filter(([id, u]) => u === user && !deleted.has(id)).map(([id]) => id));
    },
  };
}

async function expectResumedExactly(cursor: string, users: string[], w: ReturnType<typeof writer>): Promise<void> {
  const d = await fleet.start();
  const tabs = await Promise.all(
    users.map(async (u) => {
      const tab = new Tab(await tokenFor(u));
      tab.cursor = cursor;
      return tab.connect(d.url);
    }),
  );
  await w.stop();
  for (const [i, user] of users.entries()) {
    const tab = tabs[i]!;
    const want = w.expected(user);
    const live = () => new Set([...tab.ids].filter((id) => !tab.deleted.has(id)));
    // As long as the other lose-nothing tests wait: a loaded run (the whole suite in parallel) once
    // took longer than 10 s here.
    await until(() => [...want].every((id) => tab.ids.has(id)) && live().size === want.size, 30_000, `every ${user} alert`).catch(async (err) => {
      // Which ones, and what the bookkeeping says of them: a loss is then readable from the log.
      const missing = [...want].filter((id) => !tab.ids.has(id));
      const extra = [...live()].filter((id) => !want.has(id));
      const rows = await query(db, `SELECT id, txid::text, "changedTxid"::text FROM pgbell."AlertChange" WHERE id = ANY($1) UNION ALL SELECT id, 'tombstone ' || txid::text, NULL FROM pgbell."AlertTombstone" WHERE id = ANY($1)`, [[...missing, ...extra]]);
      throw new Error(`${(err as Error).message}: missing ${JSON.stringify(missing)}, not deleted ${JSON.stringify(extra)}; bookkeeping ${JSON.stringify(rows)}; cursor ${cursor}`);
    });
    expect(live()).toEqual(want);
    // Nothing from before the cursor, nothing of another user.
    for (const id of tab.ids) expect(w.inserted.get(id)).toBe(user);
    expect(tab.resets).toBe(0);
    expect(tab.repeatsWithinConnection).toEqual([]);
    tab.close();
  }
  await d.stop();
}

describe('upgrade from version 1', () => {
  it('`pgbell migrate` on a database of 000001–000008 while writers run: "Alert" becomes the model, and a cursor from before resumes exactly', async () => {
    db = await emptyDatabase('up');
    // The database as version 1's migrate left it: its files, and its ledger in public.
    const files = readdirSync(SQL_DIR).filter((f) => /^00000[1-8]_.+\.sql$/.test(f)).sort();
    expect(files).toHaveLength(8);
    await psql(db, `CREATE TABLE pgbell_migrations (name text PRIMARY KEY, sha256 text NOT NULL, "appliedAt" timestamptz NOT NULL DEFAULT now())`);
    for (const f of files) {
      await psql(db, readFileSync(SQL_DIR + f, 'utf8'));
      await query(db, `INSERT INTO pgbell_migrations (name, sha256) VALUES ($1, 'x')`, [f]);
    }
    await query(db, `INSERT INTO "User" (id, email) VALUES ('ua', 'ua@x'), ('ub', 'ub@x')`);
    const release = await holdXmin(db);
    await query(db, `INSERT INTO "Alert" ("userId", title) SELECT 'ua', 'old ' || i FROM generate_series(1, 20) i`);
    await query(db, `DELETE FROM "Alert" WHERE title = 'old 1'`);
    await query(db, `INSERT INTO pgbell_revocation ("userId", before) VALUES ('nobody', now())`);
    const cursor = await cursorOfVersion1(db, 'pgbell_state', `SELECT txid FROM "Alert" UNION SELECT "changedTxid" FROM "Alert" UNION SELECT txid FROM "AlertTombstone"`);
    await release();

    const w = writer(db, '"Alert"', '"userId"', ['ua', 'ub'], (i) => `title) VALUES ($1, 'w${i}'`);
    await until(() => w.wrote(20), 30_000, 'writes before the upgrade');
    const r = await migrate(db, { channel: 'pgbell' });
    expect(r.applied).toEqual([BOOKKEEPING_STEP]);
    const upgradedAt = w.inserted.size;
    await until(() => w.wrote(upgradedAt + 20), 30_000, 'writes after the upgrade');

    const cols = await query(db, `SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'Alert' ORDER BY ordinal_position`);
    expect(cols.map((c) => c.column_name)).toEqual(['id', 'userId', 'type', 'title', 'message', 'link', 'data', 'read', 'createdAt']);
    expect((await query(db, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)).map((t) => t.tablename)).toEqual(['Alert', 'User']);
    expect((await query(db, `SELECT count(*)::int AS n FROM pgbell.pgbell_revocation WHERE "userId" = 'nobody'`))[0]!.n).toBe(1);
    expect((await query(db, `SELECT count(*)::int AS n FROM pgbell.pgbell_migrations`))[0]!.n).toBe(8);
    // The old alerts kept their transaction ids: not replayed to a cursor from after them.
    expect((await query(db, `SELECT count(*)::int AS n FROM pgbell."AlertChange" c JOIN "Alert" a ON a.id = c.key WHERE a.title LIKE 'old %'`))[0]!.n).toBe(19);

    await expectResumedExactly(cursor, ['ua', 'ub'], w);
  }, 60_000);

  it('`pgbell install` again on a table an older pgbell installed onto: its columns and indexes go, the triggers are all that is left, and a cursor from before resumes exactly', async () => {
    db = await emptyDatabase('upi');
    const release = await holdXmin(db);
    await psql(db, `
      CREATE SCHEMA app;
      CREATE TABLE app.n (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, owner text NOT NULL, subject text NOT NULL, seen boolean NOT NULL DEFAULT false);`);
    const catalogOf = async () =>
      (
        await query(db, `SELECT 'column ' || attname || ' ' || format_type(atttypid, atttypmod) AS x FROM pg_attribute WHERE attrelid = 'app.n'::regclass AND attnum > 0 AND NOT attisdropped
          UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'app' ORDER BY 1`)
      ).map((r) => r.x as string);
    const pristine = await catalogOf();
    // What version 1's install added (src/db/install.ts of that version, in short).
    await psql(db, `
      CREATE SCHEMA pgbell;
      CREATE TABLE pgbell.install (one boolean PRIMARY KEY DEFAULT true CHECK (one), "table" regclass NOT NULL, options jsonb NOT NULL, channel text NOT NULL, version int NOT NULL DEFAULT 1, "installedAt" timestamptz NOT NULL DEFAULT now());
      INSERT INTO pgbell.install ("table", options, channel) VALUES ('app.n', '{"table":"app.n","idColumn":"id","userColumn":"owner","typeColumn":"","titleColumn":"subject","messageColumn":"","linkColumn":"","readColumn":"seen","createdColumn":""}', 'pgbell');
      CREATE TABLE pgbell.pgbell_state (one boolean PRIMARY KEY DEFAULT true CHECK (one), "databaseId" text NOT NULL DEFAULT substr(md5(gen_random_uuid()::text), 1, 8), "prunedTxid" xid8 NOT NULL DEFAULT '0', "relayTxid" xid8 NULL);
      INSERT INTO pgbell.pgbell_state DEFAULT VALUES;
      CREATE TABLE pgbell."AlertTombstone" (id text NOT NULL, "userId" text NOT NULL, txid xid8 NOT NULL DEFAULT pg_current_xact_id(), "deletedAt" timestamptz NOT NULL DEFAULT now());
      CREATE INDEX ON pgbell."AlertTombstone" (txid);
      CREATE INDEX ON pgbell."AlertTombstone" ("userId", txid);
      CREATE TABLE pgbell.pgbell_revocation (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "userId" text NOT NULL, before timestamptz NOT NULL DEFAULT now(), "createdAt" timestamptz NOT NULL DEFAULT now());
      CREATE INDEX ON pgbell.pgbell_revocation ("userId", before DESC);
      CREATE FUNCTION pgbell.tg_alert__notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify(TG_ARGV[0], '{"txid":"' || pg_current_xact_id()::text || '"}'); RETURN NULL; END $$;
      CREATE FUNCTION pgbell.tg_alert__changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.pgbell_changed_txid := pg_current_xact_id(); RETURN NEW; END $$;
      CREATE FUNCTION pgbell.tg_alert__deleted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        INSERT INTO pgbell."AlertTombstone" (id, "userId") SELECT o.id::text, o.owner::text FROM old_rows o;
        IF FOUND THEN PERFORM pg_notify(TG_ARGV[0], '{"txid":"' || pg_current_xact_id()::text || '"}'); END IF; RETURN NULL; END $$;
      CREATE FUNCTION pgbell.tg_revocation__notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
      ALTER TABLE app.n ADD COLUMN pgbell_txid xid8 NOT NULL DEFAULT pg_current_xact_id(), ADD COLUMN pgbell_changed_txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
        ADD COLUMN pgbell_seq bigint GENERATED BY DEFAULT AS IDENTITY, ADD COLUMN pgbell_created_at timestamptz NOT NULL DEFAULT now();
      CREATE INDEX n_pgbell_changed_idx ON app.n (pgbell_changed_txid);
      CREATE INDEX n_pgbell_user_changed_idx ON app.n ((owner::text), pgbell_changed_txid);
      CREATE INDEX n_pgbell_user_created_idx ON app.n ((owner::text), pgbell_created_at DESC);
      CREATE INDEX n_pgbell_user_unread_idx ON app.n ((owner::text)) WHERE NOT seen;
      CREATE VIEW pgbell."Alert" AS SELECT t.id::text AS id, t.owner AS "userId", 'general'::text AS type, t.subject AS title, ''::text AS message, NULL::text AS link,
        to_jsonb(t) AS data, t.seen AS read, t.pgbell_created_at AS "createdAt", t.pgbell_txid AS txid, t.pgbell_changed_txid AS "changedTxid", t.pgbell_seq AS seq FROM app.n t;
      CREATE TRIGGER pgbell_100_changed BEFORE UPDATE ON app.n FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION pgbell.tg_alert__changed();
      CREATE TRIGGER pgbell_900_notify AFTER INSERT OR UPDATE ON app.n FOR EACH STATEMENT EXECUTE FUNCTION pgbell.tg_alert__notify('pgbell');
      CREATE TRIGGER pgbell_900_notify_delete AFTER DELETE ON app.n REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION pgbell.tg_alert__deleted('pgbell');
      CREATE TRIGGER _900_notify AFTER INSERT ON pgbell.pgbell_revocation FOR EACH ROW EXECUTE FUNCTION pgbell.tg_revocation__notify('pgbell');
      INSERT INTO app.n (owner, subject) SELECT 'ia', 'old ' || i FROM generate_series(1, 10) i;`);
    const cursor = await cursorOfVersion1(db, 'pgbell.pgbell_state', `SELECT pgbell_txid FROM app.n UNION SELECT pgbell_changed_txid FROM app.n UNION SELECT txid FROM pgbell."AlertTombstone"`);
    await release();
    const w = writer(db, 'app.n', 'owner', ['ia', 'ib'], (i) => `subject) VALUES ($1, 'w${i}'`);
    await until(() => w.wrote(20), 30_000, 'writes before the upgrade');
    const again = await run(['install', '--table', 'app.n', '--user-column', 'owner', '--title-column', 'subject', '--read-column', 'seen'], cleanEnv({ DATABASE_URL: db }));
    expect(again.stderr).toBe('');
    expect(again.stdout).toMatch(/brought up to date/);
    const upgradedAt = w.inserted.size;
    await until(() => w.wrote(upgradedAt + 20), 30_000, 'writes after the upgrade');
    expect(await catalogOf()).toEqual(pristine);
    expect((await query(db, `SELECT tgname FROM pg_trigger WHERE tgrelid = 'app.n'::regclass ORDER BY 1`)).map((t) => t.tgname)).toEqual(['pgbell_delete', 'pgbell_insert', 'pgbell_truncate', 'pgbell_update']);
    await expectResumedExactly(cursor, ['ia', 'ib'], w);
  }, 60_000);
});
