/**
 * pgbell's bookkeeping, for whichever table holds the alerts: pgbell's own "Alert" (`pgbell
 * migrate`) or an app's table (`pgbell install`). One mechanism for both:
 *
 * - the table gets four triggers named `pgbell_*` and nothing else: no column, no index, no
 *   rewrite, no lock stronger than CREATE TRIGGER's;
 * - schema `pgbell` holds the rest:
 *     "AlertChange"      one row per alert: its key, owner, type, read state and creation
 *                        time (copies, so pgbell's reads are indexed whatever the table has),
 *                        the transaction that inserted it for its owner (`txid`), the one that
 *                        last changed it (`changedTxid`) and its order within a transaction;
 *     "AlertTombstone"   deleted alerts, for resumes; pruned after a retention period;
 *     pgbell_state       the database's id in cursors, pruning and relay horizons;
 *     pgbell_revocation  revoked sessions;
 *     install            which table, its column mapping and the NOTIFY channel;
 *     "Alert"            a view: the table joined to its bookkeeping, in the shape pgbell reads;
 *     mark_read()        marking read, through the bookkeeping's unread index;
 *   and the trigger functions, written for the table's own column names.
 *
 * Every trigger is per statement and writes its bookkeeping in one statement: a 10,000-row
 * INSERT costs one INSERT into "AlertChange", not 10,000. Every pgbell connection puts schema
 * `pgbell` first on its search_path (src/db/connect.ts), so the daemon reads the view as "Alert".
 */
import pg from 'pg';
import { inTransaction } from './lock.js';

export const SCHEMA = 'pgbell';

/** Which columns of the table mean what; '' where the table has no such column. */
export interface Mapping {
  /** `schema.table`, unquoted. */
  table: string;
  idColumn: string;
  userColumn: string;
  typeColumn: string;
  titleColumn: string;
  messageColumn: string;
  linkColumn: string;
  /** A boolean; without one, every alert is unread and cannot be marked read. */
  readColumn: string;
  /** A timestamp; without one, the time pgbell first saw the row. */
  createdColumn: string;
  /** A json(b) column sent as the alert's `data`; without one, the whole row. */
  dataColumn: string;
}

/** pgbell's own "Alert" (sql/000001_schema.sql), as `pgbell migrate` creates it. */
export const MODEL_MAPPING: Mapping = {
  table: 'public.Alert',
  idColumn: 'id',
  userColumn: 'userId',
  typeColumn: 'type',
  titleColumn: 'title',
  messageColumn: 'message',
  linkColumn: 'link',
  readColumn: 'read',
  createdColumn: 'createdAt',
  dataColumn: 'data',
};

/** What created the bookkeeping: `pgbell migrate` (pgbell's own tables) or `pgbell install`. */
export type Kind = 'migrate' | 'install';

/** Version 1: the bookkeeping lived in columns of the table. 2: in schema pgbell only. */
const VERSION = 2;

/** The triggers on the table, by event. Names sort after most apps' own (they run in name order). */
export const TABLE_TRIGGERS = ['pgbell_insert', 'pgbell_update', 'pgbell_delete', 'pgbell_truncate'] as const;

const q = pg.escapeIdentifier;
const lit = pg.escapeLiteral;

/**
 * `body` dollar-quoted with a tag that does not occur in it. Function bodies hold the table's
 * and columns' names (quoted, but a name may contain `$$`): with a fixed tag, such a name would
 * end the quote and the rest of it would run as SQL.
 */
export function dollarQuoted(body: string): string {
  let tag = '$pgbell$';
  for (let i = 1; body.includes(tag); i++) tag = `$pgbell${i}$`;
  return `${tag}${body}${tag}`;
}

/**
 * The trigger functions run with the rights of the role that ran migrate or install, whatever
 * role writes the table: a writer that may write the table needs nothing of pgbell's (no usage
 * on schema pgbell, no rights on its tables). Postgres's advice for such functions: a fixed
 * search_path with pg_temp last, and every name in the body qualified. The transition tables
 * hold only the rows the writer's own statement changed (what row-level security let it
 * change), so a writer moves nothing of pgbell's but the bookkeeping of its own rows.
 */
const DEFINER = 'SECURITY DEFINER SET search_path = pg_catalog, pg_temp';

/** The trigger functions, by signature: nobody calls them but their triggers. */
const TRIGGER_FUNCTIONS = ['tg_alert__inserted()', 'tg_alert__updated()', 'tg_alert__deleted()', 'tg_alert__truncated()', 'tg_revocation__notify()', 'pgbell_notify_change(text)'];

/** `schema.table` as stored → quoted SQL. */
export function tableSql(name: string): string {
  const [schema, table] = name.split('.') as [string, string];
  return `${q(schema)}.${q(table)}`;
}

type Run = (text: string) => Promise<{ rows: unknown[] }>;

export interface Source {
  kind: Kind;
  mapping: Mapping;
  channel: string;
  version: number;
}

/** What schema pgbell says about the table it serves, or null where there is none. */
export async function readSource(run: Run): Promise<Source | null> {
  const { rows } = await run(`SELECT to_regclass('${SCHEMA}.install') IS NOT NULL AS present`);
  if (!(rows[0] as { present: boolean }).present) return null;
  const hasKind = (await run(`SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = '${SCHEMA}.install'::regclass AND attname = 'kind' AND NOT attisdropped`)).rows[0] as { n: number };
  const res = await run(`SELECT options, channel, version, ${hasKind.n > 0 ? 'kind' : `'install'`} AS kind FROM ${SCHEMA}.install`);
  const row = res.rows[0] as { options: Mapping; channel: string; version: number; kind: Kind } | undefined;
  if (!row) return null;
  // Installs of version 1 stored no data column: the whole row.
  return { kind: row.kind, mapping: { ...row.options, dataColumn: row.options.dataColumn ?? '' }, channel: row.channel, version: row.version };
}

/**
 * The triggers that carry the channel, as (relation, trigger name) SQL pairs: the table's four
 * and the revocation table's.
 */
export const NOTIFY_TRIGGERS = [
  ...TABLE_TRIGGERS.map((t) => `((SELECT "table" FROM ${SCHEMA}.install)::oid, '${t}')`),
  `('${SCHEMA}.pgbell_revocation'::regclass::oid, '_900_notify')`,
];

/**
 * Creates the bookkeeping for `m` (or brings an older one up to date), in one transaction.
 * Returns true if any trigger function changed.
 */
export async function applyBookkeeping(client: pg.Client, m: Mapping, channel: string, kind: Kind): Promise<boolean> {
  const digest = async () =>
    (
      await client.query<{ d: string | null }>(
        `SELECT md5(string_agg(pg_get_functiondef(p.oid), '' ORDER BY p.proname)) AS d FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ${lit(SCHEMA)}`,
      )
    ).rows[0]!.d;
  const before = await digest();
  await inTransaction(client, async () => {
    const t = tableSql(m.table);
    const existing = await readSource((text) => client.query(text));
    const legacyModel = kind === 'migrate' && (await hasColumn(client, t, 'changedTxid'));
    const legacyInstall = existing !== null && existing.version < VERSION && (await hasColumn(client, t, 'pgbell_changed_txid'));
    const fresh = (await client.query<{ r: string | null }>(`SELECT to_regclass('${SCHEMA}."AlertChange"')::text AS r`)).rows[0]!.r === null;
    // The table's lock first, the strongest this transaction takes on it: writers wait for it
    // here instead of holding the table while waiting for a bookkeeping table this transaction
    // holds (a deadlock that would fail the writer). CREATE TRIGGER's; dropping version 1's
    // columns needs ACCESS EXCLUSIVE (no rewrite).
    await client.query(`LOCK TABLE ${t} IN ${legacyModel || legacyInstall ? 'ACCESS EXCLUSIVE' : 'SHARE ROW EXCLUSIVE'} MODE`);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
    if (legacyModel) {
      // pgbell migrate's tables of version 1 move into the schema, rows, ids and all: cursors
      // (the database id, the pruning horizon) stay valid across the upgrade.
      for (const table of ['pgbell_state', 'pgbell_revocation', '"AlertTombstone"']) {
        if ((await client.query(`SELECT to_regclass('public.${table}') IS NOT NULL AS p`)).rows[0].p) await client.query(`ALTER TABLE public.${table} SET SCHEMA ${SCHEMA}`);
      }
    }
    for (const statement of statements(m, channel, kind)) await client.query(statement);
    if (legacyModel) await adopt(client, m, { txid: 'txid', changed: 'changedTxid', seq: 'seq', created: null });
    else if (legacyInstall) await adopt(client, m, { txid: 'pgbell_txid', changed: 'pgbell_changed_txid', seq: 'pgbell_seq', created: m.createdColumn ? null : 'pgbell_created_at' });
    else if (fresh) {
      // Rows already there are older than any cursor a client can hold: this transaction's id.
      await client.query(`INSERT INTO ${SCHEMA}."AlertChange" (key, id, "userId", type, read, "createdAt", txid, "changedTxid")
        SELECT ${values(m, 'r', 'now()')}, pg_current_xact_id(), pg_current_xact_id() FROM ${t} r WHERE r.${q(m.userColumn)} IS NOT NULL ORDER BY r.${q(m.idColumn)}`);
    }
    if (legacyModel) await dropLegacyModel(client);
    if (legacyInstall) await dropLegacyInstall(client, m);
    await client.query(
      `INSERT INTO ${SCHEMA}.install ("table", options, channel, version, kind) VALUES (${lit(t)}::regclass, $1, $2, ${VERSION}, $3)
       ON CONFLICT (one) DO UPDATE SET "table" = excluded."table", options = excluded.options, channel = excluded.channel, version = excluded.version, kind = excluded.kind`,
      [JSON.stringify(m), channel, kind],
    );
  });
  return (await digest()) !== before;
}

/** Points the triggers at another channel ('' sends no NOTIFY: poll mode), atomically. */
export async function setChannel(client: pg.Client, m: Mapping, channel: string): Promise<void> {
  await inTransaction(client, async () => {
    for (const statement of triggerStatements(m, channel)) await client.query(statement);
    await client.query(`UPDATE ${SCHEMA}.install SET channel = $1`, [channel]);
  });
}

/** Removes the triggers and schema pgbell: the table is left exactly as it was. */
export async function removeBookkeeping(client: pg.Client, m: Mapping): Promise<void> {
  const t = tableSql(m.table);
  await inTransaction(client, async () => {
    for (const trigger of TABLE_TRIGGERS) await client.query(`DROP TRIGGER IF EXISTS ${trigger} ON ${t}`);
    await client.query(`DROP PUBLICATION IF EXISTS ${q(PUBLICATION)}`);
    await client.query(`DROP SCHEMA ${SCHEMA} CASCADE`);
  });
}

/**
 * The mode the database is set up for, as migrate or install left it: a channel means notify
 * mode; no channel, WAL mode if the publication is there, else poll. Null where pgbell has no
 * bookkeeping yet.
 */
export async function databaseMode(run: Run): Promise<{ mode: 'notify' | 'poll' | 'wal'; channel: string } | null> {
  const source = await readSource(run);
  if (source === null) return null;
  if (source.channel !== '') return { mode: 'notify', channel: source.channel };
  const { rows } = await run(`SELECT 1 FROM pg_publication WHERE pubname = ${lit(PUBLICATION)}`);
  return { mode: rows.length > 0 ? 'wal' : 'poll', channel: '' };
}

/** The channel the triggers notify on: null if one is missing, "a and b" if they disagree. */
export async function triggerChannel(run: Run): Promise<string | null> {
  if ((await readSource(run)) === null) return null;
  const { rows } = await run(`SELECT t.tgargs AS args FROM pg_trigger t WHERE (t.tgrelid, t.tgname) IN (${NOTIFY_TRIGGERS.join(', ')})`);
  if (rows.length < NOTIFY_TRIGGERS.length) return null;
  const channels = new Set(
    (rows as Array<{ args: Buffer | string }>).map(({ args }) => {
      // tgargs is bytea: NUL-terminated arguments.
      const text = Buffer.isBuffer(args) ? args.toString('utf8') : args;
      return text.split('\0')[0] ?? '';
    }),
  );
  return [...channels].join(' and ');
}

/**
 * A database restored (pg_dump, pg_restore) into another cluster keeps the transaction ids its
 * bookkeeping was stamped with in the old one. Where those are above what this cluster has
 * handed out, every horizon is below them: the rows would be re-read by every sync and poll,
 * and a relay would catch up from a horizon in the future (publishing nothing). They are
 * re-stamped as old ('3', the first normal transaction id): cursors from the old cluster reset
 * anyway (the database id includes the cluster's). Returns how many rows were re-stamped.
 *
 * Every daemon start runs this while the app may be writing. A snapshot's xmax bounds only
 * the transactions committed before it: a row committed a moment later has an id at or above
 * it and is no restore. So the first look (no lock) only says whether to look again; the
 * second holds the bookkeeping tables against writers, takes its bound then, and re-stamps
 * only what is above it.
 */
export async function renormalizeForeignTxids(client: pg.Client): Promise<number> {
  const above = (x: string) =>
    client.query<{ n: string }>(
      `SELECT (SELECT count(*) FROM ${SCHEMA}."AlertChange" WHERE txid >= $1::xid8 OR "changedTxid" >= $1::xid8)
            + (SELECT count(*) FROM ${SCHEMA}."AlertTombstone" WHERE txid >= $1::xid8)
            + (SELECT count(*) FROM ${SCHEMA}.pgbell_state WHERE "relayTxid" >= $1::xid8 OR "prunedTxid" >= $1::xid8) AS n`,
      [x],
    );
  const bound = async () => (await client.query<{ x: string }>(`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x`)).rows[0]!.x;
  if (Number((await above(await bound())).rows[0]!.n) === 0) return 0;
  return inTransaction(client, async () => {
    // A writer holds ROW EXCLUSIVE on these until it commits: once this lock is granted, every
    // row here was committed, so below the bound taken next.
    await client.query(`LOCK TABLE ${SCHEMA}."AlertChange", ${SCHEMA}."AlertTombstone", ${SCHEMA}.pgbell_state IN SHARE ROW EXCLUSIVE MODE`);
    const x = await bound();
    const n = Number((await above(x)).rows[0]!.n);
    if (n === 0) return 0;
    await client.query(
      `UPDATE ${SCHEMA}."AlertChange" SET txid = CASE WHEN txid >= $1::xid8 THEN '3'::xid8 ELSE txid END,
                          "changedTxid" = CASE WHEN "changedTxid" >= $1::xid8 THEN '3'::xid8 ELSE "changedTxid" END
        WHERE txid >= $1::xid8 OR "changedTxid" >= $1::xid8`,
      [x],
    );
    await client.query(`UPDATE ${SCHEMA}."AlertTombstone" SET txid = '3' WHERE txid >= $1::xid8`, [x]);
    await client.query(
      `UPDATE ${SCHEMA}.pgbell_state SET "relayTxid" = CASE WHEN "relayTxid" >= $1::xid8 THEN NULL ELSE "relayTxid" END,
                               "prunedTxid" = CASE WHEN "prunedTxid" >= $1::xid8 THEN '0'::xid8 ELSE "prunedTxid" END`,
      [x],
    );
    return n;
  });
}

async function hasColumn(client: pg.Client, table: string, column: string): Promise<boolean> {
  const { rows } = await client.query(`SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped`, [table, column]);
  return rows.length > 0;
}

/**
 * The bookkeeping values of a row `r` of the table, in "AlertChange"'s column order (key, id,
 * "userId", type, read, "createdAt"); `created` when the table has no creation time.
 */
function values(m: Mapping, r: string, created: string): string {
  const col = (c: string) => `${r}.${q(c)}`;
  return [
    `${col(m.idColumn)} AS key`,
    `${col(m.idColumn)}::text AS id`,
    `${col(m.userColumn)}::text AS "userId"`,
    `${m.typeColumn ? `coalesce(${col(m.typeColumn)}::text, 'general')` : `'general'::text`} AS type`,
    `${m.readColumn ? `coalesce(${col(m.readColumn)}, false)` : 'false'} AS read`,
    `${m.createdColumn ? `coalesce(${col(m.createdColumn)}::timestamptz, now())` : created} AS "createdAt"`,
  ].join(', ');
}

/** Idempotent: creates what is missing, replaces every function, view and trigger. */
function statements(m: Mapping, channel: string, kind: Kind): string[] {
  const t = tableSql(m.table);
  const s = SCHEMA;
  const idType = `(SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = ${lit(t)}::regclass AND attname = ${lit(m.idColumn)})`;
  const col = (r: string, c: string) => `${r}.${q(c)}`;
  const notify = `PERFORM ${s}.pgbell_notify_change(TG_ARGV[0]);`;
  return [
    `CREATE TABLE IF NOT EXISTS ${s}.install (
       one           boolean PRIMARY KEY DEFAULT true CHECK (one),
       "table"       regclass NOT NULL,
       options       jsonb NOT NULL,
       channel       text NOT NULL,
       version       int NOT NULL DEFAULT 1,
       "installedAt" timestamptz NOT NULL DEFAULT now()
     )`,
    `ALTER TABLE ${s}.install ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'install'`,
    `COMMENT ON SCHEMA ${s} IS 'pgbell: its bookkeeping for the alerts table (see pgbell.install)'`,
    `CREATE TABLE IF NOT EXISTS ${s}.pgbell_state (
       one          boolean PRIMARY KEY DEFAULT true CHECK (one),
       "databaseId" text NOT NULL DEFAULT substr(md5(gen_random_uuid()::text), 1, 8),
       -- Cursors whose horizon is at or below this may have missed a pruned delete.
       "prunedTxid" xid8 NOT NULL DEFAULT '0',
       -- Redis fan-out: every transaction below this has been published.
       "relayTxid"  xid8 NULL
     )`,
    `INSERT INTO ${s}.pgbell_state DEFAULT VALUES ON CONFLICT DO NOTHING`,
    `CREATE TABLE IF NOT EXISTS ${s}."AlertTombstone" (
       id          text NOT NULL,
       "userId"    text NOT NULL,
       txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
       "deletedAt" timestamptz NOT NULL DEFAULT now()
     )`,
    `CREATE INDEX IF NOT EXISTS "AlertTombstone_txid_idx" ON ${s}."AlertTombstone" (txid)`,
    `CREATE INDEX IF NOT EXISTS "AlertTombstone_userId_txid_idx" ON ${s}."AlertTombstone" ("userId", txid)`,
    // WAL mode publishes it: without a replica identity, pruning's DELETE would be refused.
    `ALTER TABLE ${s}."AlertTombstone" REPLICA IDENTITY FULL`,
    `CREATE TABLE IF NOT EXISTS ${s}.pgbell_revocation (
       id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       "userId"    text NOT NULL CHECK (length("userId") <= 1000),
       before      timestamptz NOT NULL DEFAULT now(),
       "createdAt" timestamptz NOT NULL DEFAULT now()
     )`,
    `CREATE INDEX IF NOT EXISTS pgbell_revocation_user_idx ON ${s}.pgbell_revocation ("userId", before DESC)`,
    // The key has the table's own id type, so joining back to the table uses its primary key.
    `DO ${dollarQuoted(` BEGIN
       IF to_regclass('${s}."AlertChange"') IS NULL THEN
         EXECUTE format('CREATE TABLE ${s}."AlertChange" (
           key           %s PRIMARY KEY,
           id            text NOT NULL,
           "userId"      text NOT NULL,
           type          text NOT NULL,
           read          boolean NOT NULL,
           "createdAt"   timestamptz NOT NULL,
           txid          xid8 NOT NULL,
           "changedTxid" xid8 NOT NULL,
           seq           bigint GENERATED BY DEFAULT AS IDENTITY
         )', ${idType});
       END IF;
     END `)}`,
    // Live reads find a transaction's rows; resumes a user's since a transaction; the bell's
    // list a user's newest; unread counts come from the index alone.
    `CREATE INDEX IF NOT EXISTS "AlertChange_changedTxid_idx" ON ${s}."AlertChange" ("changedTxid")`,
    // Live reads are planned once, generically: the planner must assume a transaction changes
    // few rows, which is how alerts are written, even right after an install gave every
    // existing row the same transaction (statistics would then say "all rows", and every read
    // would scan the table).
    `ALTER TABLE ${s}."AlertChange" ALTER COLUMN "changedTxid" SET (n_distinct = -1), ALTER COLUMN txid SET (n_distinct = -1)`,
    `CREATE INDEX IF NOT EXISTS "AlertChange_userId_changedTxid_idx" ON ${s}."AlertChange" ("userId", "changedTxid")`,
    `CREATE INDEX IF NOT EXISTS "AlertChange_userId_createdAt_idx" ON ${s}."AlertChange" ("userId", "createdAt" DESC, id DESC)`,
    `CREATE INDEX IF NOT EXISTS "AlertChange_userId_type_unread_idx" ON ${s}."AlertChange" ("userId", type) WHERE NOT read`,
    // The one NOTIFY every trigger sends: the writer's transaction id, or nothing when the
    // channel is empty (poll mode). A payload is only a hint (src/sources/listen.ts).
    `CREATE OR REPLACE FUNCTION ${s}.pgbell_notify_change(channel text) RETURNS void LANGUAGE plpgsql ${DEFINER} AS ${dollarQuoted(`
     BEGIN
       IF channel <> '' THEN
         PERFORM pg_notify(channel, '{"txid":"' || pg_current_xact_id()::text || '"}');
       END IF;
     END `)}`,
    `CREATE OR REPLACE FUNCTION ${s}.tg_alert__inserted() RETURNS trigger LANGUAGE plpgsql ${DEFINER} AS ${dollarQuoted(`
     BEGIN
       INSERT INTO ${s}."AlertChange" AS c (key, id, "userId", type, read, "createdAt", txid, "changedTxid")
       SELECT ${values(m, 'n', 'now()')}, pg_current_xact_id(), pg_current_xact_id() FROM new_rows n
        -- A row without an owner is the app's to store and no one's to be sent (pgbell doctor counts them).
        WHERE ${col('n', m.userColumn)} IS NOT NULL
       -- Only if the row was written while the triggers were off (session_replication_role).
       ON CONFLICT (key) DO UPDATE SET "userId" = excluded."userId", type = excluded.type, read = excluded.read,
         "createdAt" = excluded."createdAt", txid = excluded.txid, "changedTxid" = excluded."changedTxid";
       IF FOUND THEN ${notify} END IF;
       RETURN NULL;
     END `)}`,
    // Only a real change counts: marking read rows that are read already re-renders nothing
    // (rows compare by their text: every type has one, and json has no equality and may hold
    // what to_jsonb refuses). A new owner is a delete for the old one (a tombstone) and a new
    // alert for the new one (txid becomes this transaction). An owner set to NULL is a delete;
    // an owner set from NULL is a new alert. A changed key is a delete and an insert.
    `CREATE OR REPLACE FUNCTION ${s}.tg_alert__updated() RETURNS trigger LANGUAGE plpgsql ${DEFINER} AS ${dollarQuoted(`
     DECLARE n bigint;
     BEGIN
       WITH pairs AS (
         SELECT ${values(m, 'nr', 'NULL::timestamptz')}
           FROM new_rows nr JOIN old_rows o ON ${col('o', m.idColumn)} = ${col('nr', m.idColumn)}
          WHERE nr::text IS DISTINCT FROM o::text
       ), moved AS (
         INSERT INTO ${s}."AlertTombstone" (id, "userId")
         SELECT c.id, c."userId" FROM ${s}."AlertChange" c JOIN pairs p ON c.key = p.key
          WHERE c."userId" IS DISTINCT FROM p."userId"
       ), changed AS (
         UPDATE ${s}."AlertChange" c
            SET "userId" = p."userId", type = p.type, read = p.read,
                "createdAt" = coalesce(p."createdAt", c."createdAt"),
                txid = CASE WHEN c."userId" IS DISTINCT FROM p."userId" THEN pg_current_xact_id() ELSE c.txid END,
                "changedTxid" = pg_current_xact_id()
           FROM pairs p WHERE c.key = p.key AND p."userId" IS NOT NULL
         RETURNING 1
       ), orphaned AS (
         DELETE FROM ${s}."AlertChange" c USING pairs p WHERE c.key = p.key AND p."userId" IS NULL
         RETURNING 1
       ), gone AS (
         DELETE FROM ${s}."AlertChange" c USING old_rows o
          WHERE c.key = ${col('o', m.idColumn)} AND NOT EXISTS (SELECT 1 FROM new_rows nr WHERE ${col('nr', m.idColumn)} = ${col('o', m.idColumn)})
         RETURNING c.id, c."userId"
       ), buried AS (
         INSERT INTO ${s}."AlertTombstone" (id, "userId") SELECT id, "userId" FROM gone
       ), born AS (
         -- New keys, and rows that had no bookkeeping (no owner until now).
         INSERT INTO ${s}."AlertChange" (key, id, "userId", type, read, "createdAt", txid, "changedTxid")
         SELECT ${values(m, 'nr', 'now()')}, pg_current_xact_id(), pg_current_xact_id() FROM new_rows nr
          WHERE ${col('nr', m.userColumn)} IS NOT NULL
            AND (NOT EXISTS (SELECT 1 FROM old_rows o WHERE ${col('o', m.idColumn)} = ${col('nr', m.idColumn)})
                 OR NOT EXISTS (SELECT 1 FROM ${s}."AlertChange" c WHERE c.key = ${col('nr', m.idColumn)}))
         RETURNING 1
       )
       SELECT (SELECT count(*) FROM changed) + (SELECT count(*) FROM orphaned) + (SELECT count(*) FROM gone) + (SELECT count(*) FROM born) INTO n;
       IF n > 0 THEN ${notify} END IF;
       RETURN NULL;
     END `)}`,
    `CREATE OR REPLACE FUNCTION ${s}.tg_alert__deleted() RETURNS trigger LANGUAGE plpgsql ${DEFINER} AS ${dollarQuoted(`
     BEGIN
       WITH gone AS (
         DELETE FROM ${s}."AlertChange" c USING old_rows o WHERE c.key = ${col('o', m.idColumn)} RETURNING c.id, c."userId"
       )
       INSERT INTO ${s}."AlertTombstone" (id, "userId") SELECT id, "userId" FROM gone;
       IF FOUND THEN ${notify} END IF;
       RETURN NULL;
     END `)}`,
    // TRUNCATE fires no DELETE trigger: every alert becomes a tombstone here.
    `CREATE OR REPLACE FUNCTION ${s}.tg_alert__truncated() RETURNS trigger LANGUAGE plpgsql ${DEFINER} AS ${dollarQuoted(`
     BEGIN
       WITH gone AS (DELETE FROM ${s}."AlertChange" RETURNING id, "userId")
       INSERT INTO ${s}."AlertTombstone" (id, "userId") SELECT id, "userId" FROM gone;
       IF FOUND THEN ${notify} END IF;
       RETURN NULL;
     END `)}`,
    `CREATE OR REPLACE FUNCTION ${s}.tg_revocation__notify() RETURNS trigger LANGUAGE plpgsql ${DEFINER} AS ${dollarQuoted(`
     BEGIN
       IF TG_ARGV[0] <> '' THEN
         PERFORM pg_notify(TG_ARGV[0], json_build_object(
           'revoke', NEW."userId",
           'before', floor(extract(epoch FROM NEW.before))::bigint::text)::text);
       END IF;
       RETURN NULL;
     END `)}`,
    // An installed table's row of key `k` in the shape pgbell reads (no row if it is gone). Its
    // data is NULL for a row to_jsonb refuses (a json column holding \u0000 fails with 22P05):
    // that one row goes without its data, and every read that includes it still succeeds. The
    // view reads the table only through here: a view naming the table's columns, or holding a
    // whole-row reference, would make the app's ALTER TABLE ... ALTER COLUMN ... TYPE fail
    // ("used by a view"). About 5 µs a row.
    `CREATE OR REPLACE FUNCTION ${s}.row_of(k anyelement, OUT title text, OUT message text, OUT link text, OUT data jsonb)
       RETURNS SETOF record LANGUAGE plpgsql STABLE ROWS 1 AS ${dollarQuoted(`
     DECLARE r record;
     BEGIN
       SELECT * INTO r FROM ${t} t WHERE ${col('t', m.idColumn)} = k;
       IF NOT FOUND THEN RETURN; END IF;
       title := ${m.titleColumn ? `coalesce(${col('r', m.titleColumn)}::text, '')` : `''`};
       message := ${m.messageColumn ? `coalesce(${col('r', m.messageColumn)}::text, '')` : `''`};
       link := ${m.linkColumn ? `${col('r', m.linkColumn)}::text` : 'NULL'};
       BEGIN
         data := ${m.dataColumn ? `${col('r', m.dataColumn)}::jsonb` : 'to_jsonb(r)'};
       EXCEPTION WHEN data_exception THEN
         data := NULL;
       END;
       RETURN NEXT;
     END `)}`,
    // Marking read writes the table's own column (its UPDATE streams like any other), found
    // through the bookkeeping's unread index. NULL ids: all of the user's.
    `CREATE OR REPLACE FUNCTION ${s}.mark_read(p_user text, p_ids text[]) RETURNS bigint LANGUAGE plpgsql AS ${dollarQuoted(`
     DECLARE n bigint;
     BEGIN
       ${
         m.readColumn
           ? `UPDATE ${t} r SET ${q(m.readColumn)} = true FROM ${s}."AlertChange" c
           WHERE c.key = ${col('r', m.idColumn)} AND c."userId" = p_user AND NOT c.read AND (p_ids IS NULL OR c.id = ANY(p_ids));
         GET DIAGNOSTICS n = ROW_COUNT;
         RETURN n;`
           : `RAISE EXCEPTION 'pgbell: read state is not tracked on ${m.table.replace(/'/g, "''")}' USING ERRCODE = '0A000';`
       }
     END `)}`,
    // The table in the shape pgbell reads, its bookkeeping beside it.
    `DROP VIEW IF EXISTS ${s}."Alert"`,
    kind === 'install'
      ? `CREATE VIEW ${s}."Alert" AS SELECT
       c.key, c.id, c."userId", c.type, f.title, f.message, f.link, f.data, c.read, c."createdAt", c.txid, c."changedTxid", c.seq
     FROM ${s}."AlertChange" c CROSS JOIN LATERAL ${s}.row_of(c.key) f`
      : `CREATE VIEW ${s}."Alert" AS SELECT
       c.key,
       c.id,
       c."userId",
       c.type,
       ${m.titleColumn ? `coalesce(${col('t', m.titleColumn)}::text, '')` : `''::text`} AS title,
       ${m.messageColumn ? `coalesce(${col('t', m.messageColumn)}::text, '')` : `''::text`} AS message,
       ${m.linkColumn ? `${col('t', m.linkColumn)}::text` : 'NULL::text'} AS link,
       ${m.dataColumn ? `${col('t', m.dataColumn)}::jsonb` : `to_jsonb(t)`} AS data,
       c.read,
       c."createdAt",
       c.txid,
       c."changedTxid",
       c.seq
     FROM ${t} t JOIN ${s}."AlertChange" c ON c.key = ${col('t', m.idColumn)}`,
    `DROP FUNCTION IF EXISTS ${s}.row_data(anyelement)`,
    `DROP FUNCTION IF EXISTS ${s}.row_data_of(anyelement)`,
    ...triggerStatements(m, channel),
    // Nothing of pgbell's is anyone's but its owner's: no role gains a way into its tables
    // through its functions.
    `REVOKE ALL ON SCHEMA ${s} FROM PUBLIC`,
    ...TRIGGER_FUNCTIONS.map((f) => `REVOKE ALL ON FUNCTION ${s}.${f} FROM PUBLIC`),
  ];
}

/** The triggers: on the table, one per event (transition tables need that), and on revocations. */
function triggerStatements(m: Mapping, channel: string): string[] {
  const t = tableSql(m.table);
  const c = lit(channel);
  return [
    `CREATE OR REPLACE TRIGGER pgbell_insert AFTER INSERT ON ${t} REFERENCING NEW TABLE AS new_rows
       FOR EACH STATEMENT EXECUTE FUNCTION ${SCHEMA}.tg_alert__inserted(${c})`,
    `CREATE OR REPLACE TRIGGER pgbell_update AFTER UPDATE ON ${t} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
       FOR EACH STATEMENT EXECUTE FUNCTION ${SCHEMA}.tg_alert__updated(${c})`,
    `CREATE OR REPLACE TRIGGER pgbell_delete AFTER DELETE ON ${t} REFERENCING OLD TABLE AS old_rows
       FOR EACH STATEMENT EXECUTE FUNCTION ${SCHEMA}.tg_alert__deleted(${c})`,
    `CREATE OR REPLACE TRIGGER pgbell_truncate AFTER TRUNCATE ON ${t}
       FOR EACH STATEMENT EXECUTE FUNCTION ${SCHEMA}.tg_alert__truncated(${c})`,
    `CREATE OR REPLACE TRIGGER _900_notify AFTER INSERT ON ${SCHEMA}.pgbell_revocation
       FOR EACH ROW EXECUTE FUNCTION ${SCHEMA}.tg_revocation__notify(${c})`,
  ];
}

/**
 * Version 1 kept the bookkeeping in columns of the table: it moves into "AlertChange" with its
 * transaction ids, so cursors from before the upgrade resume exactly.
 */
async function adopt(client: pg.Client, m: Mapping, legacy: { txid: string; changed: string; seq: string; created: string | null }): Promise<void> {
  const t = tableSql(m.table);
  await client.query(`INSERT INTO ${SCHEMA}."AlertChange" (key, id, "userId", type, read, "createdAt", txid, "changedTxid", seq)
    SELECT ${values(m, 'r', legacy.created ? `r.${q(legacy.created)}` : 'now()')}, r.${q(legacy.txid)}, r.${q(legacy.changed)}, r.${q(legacy.seq)} FROM ${t} r
    WHERE r.${q(m.userColumn)} IS NOT NULL
    ON CONFLICT (key) DO NOTHING`);
  await client.query(`SELECT setval(pg_get_serial_sequence('${SCHEMA}."AlertChange"', 'seq'), greatest(1, (SELECT max(seq) FROM ${SCHEMA}."AlertChange")))`);
}

/** What migrations 000002–000008 added to "Alert" and public, now in schema pgbell. */
async function dropLegacyModel(client: pg.Client): Promise<void> {
  for (const trigger of ['_100_changed', '_900_notify', '_900_notify_delete']) await client.query(`DROP TRIGGER IF EXISTS ${trigger} ON public."Alert"`);
  for (const fn of ['tg_alert__changed()', 'tg_alert__notify()', 'tg_alert__deleted()', 'tg_revocation__notify()', 'pgbell_notify_change(text)']) {
    await client.query(`DROP FUNCTION IF EXISTS public.${fn}`);
  }
  // Their indexes go with them.
  await client.query(`ALTER TABLE public."Alert" DROP COLUMN txid, DROP COLUMN "changedTxid", DROP COLUMN seq`);
}

/** What `pgbell install` of version 1 added to the app's table. */
async function dropLegacyInstall(client: pg.Client, m: Mapping): Promise<void> {
  const t = tableSql(m.table);
  for (const trigger of ['pgbell_100_changed', 'pgbell_900_notify', 'pgbell_900_notify_delete']) await client.query(`DROP TRIGGER IF EXISTS ${trigger} ON ${t}`);
  for (const fn of ['tg_alert__changed()', 'tg_alert__notify()']) await client.query(`DROP FUNCTION IF EXISTS ${SCHEMA}.${fn}`);
  const schema = q(m.table.split('.')[0]!);
  for (const suffix of ['pgbell_user_created_idx', 'pgbell_user_unread_idx']) {
    await client.query(`DROP INDEX IF EXISTS ${schema}.${q(`${m.table.split('.').pop()!}_${suffix}`.slice(0, 63))}`);
  }
  await client.query(`DROP INDEX IF EXISTS ${SCHEMA}."pgbell_revocation_userId_before_idx"`);
  const added = ['pgbell_txid', 'pgbell_changed_txid', 'pgbell_seq', ...(m.createdColumn ? [] : ['pgbell_created_at'])];
  await client.query(`ALTER TABLE ${t} ${added.map((c) => `DROP COLUMN IF EXISTS ${c}`).join(', ')}`);
}

/**
 * WAL mode's publication: the table and pgbell's bookkeeping, every kind of change. The daemon
 * streams it over a replication connection (src/sources/wal.ts); nothing else uses it.
 */
export const PUBLICATION = 'pgbell';

/** The tables the publication must hold, as `schema.table` (unquoted, like Mapping.table). */
export function publishedTables(m: Mapping): string[] {
  return [m.table, `${SCHEMA}.AlertChange`, `${SCHEMA}.AlertTombstone`, `${SCHEMA}.pgbell_revocation`];
}

/**
 * Creates the publication (WAL mode) or drops it (the other modes): true if anything changed.
 * A publication that exists but differs from what WAL mode needs is made right.
 */
export async function setPublication(client: pg.Client, m: Mapping, on: boolean): Promise<boolean> {
  const problem = await publicationProblem((text) => client.query(text), m);
  if (!on) {
    if (problem === 'missing') return false;
    await client.query(`DROP PUBLICATION ${q(PUBLICATION)}`);
    return true;
  }
  if (problem === null) return false;
  // Postgres refuses UPDATE and DELETE on a published table it cannot identify rows of.
  const { rows } = await client.query<{ ident: string; pk: boolean }>(
    `SELECT c.relreplident AS ident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS pk FROM pg_class c WHERE c.oid = $1::regclass`,
    [tableSql(m.table)],
  );
  const { ident, pk } = rows[0]!;
  if (ident === 'n' || (ident === 'd' && !pk)) {
    throw new Error(`WAL mode publishes ${m.table}, which has no replica identity: Postgres would then refuse its UPDATEs and DELETEs. Give it a primary key, or ALTER TABLE ${tableSql(m.table)} REPLICA IDENTITY USING INDEX <a unique index>, or use PGBELL_MODE=notify`);
  }
  if (problem !== 'missing') await client.query(`DROP PUBLICATION ${q(PUBLICATION)}`);
  const tables = publishedTables(m).map(tableSql).join(', ');
  await client.query(`CREATE PUBLICATION ${q(PUBLICATION)} FOR TABLE ${tables} WITH (publish = 'insert, update, delete, truncate')`);
  return true;
}

/**
 * What is wrong with the publication, in words, or null when it is what WAL mode needs:
 * 'missing', or how it was altered (tables, actions, row filters or column lists).
 */
export async function publicationProblem(run: Run, m: Mapping): Promise<string | null> {
  const { rows: pubs } = await run(`SELECT to_jsonb(p) AS p FROM pg_publication p WHERE pubname = ${lit(PUBLICATION)}`);
  const pub = (pubs[0] as { p: Record<string, unknown> } | undefined)?.p;
  if (!pub) return 'missing';
  const actions = ['pubinsert', 'pubupdate', 'pubdelete', 'pubtruncate'].filter((a) => pub[a] !== true);
  if (actions.length > 0) return `it does not publish ${actions.map((a) => a.slice(3)).join(', ')}`;
  if (pub.puballtables === true) return 'it is FOR ALL TABLES';
  const { rows } = await run(`SELECT to_jsonb(t) AS t FROM pg_publication_tables t WHERE pubname = ${lit(PUBLICATION)}`);
  const have = (rows as Array<{ t: Record<string, unknown> }>).map(({ t }) => t);
  const want = publishedTables(m);
  const names = have.map((t) => `${t.schemaname}.${t.tablename}`);
  const missing = want.filter((w) => !names.includes(w));
  const extra = names.filter((n) => !want.includes(n));
  if (missing.length > 0) return `it lacks ${missing.join(', ')}`;
  if (extra.length > 0) return `it also publishes ${extra.join(', ')}`;
  // PostgreSQL 15 and later: a row filter or a column list would hide changes.
  const filtered = have.filter((t) => t.rowfilter != null).map((t) => `${t.schemaname}.${t.tablename}`);
  if (filtered.length > 0) return `it filters rows of ${filtered.join(', ')}`;
  return null;
}
