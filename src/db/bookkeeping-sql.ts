/**
 * The SQL that creates pgbell's bookkeeping for a table, as text: schema pgbell's tables and
 * indexes, the trigger functions written for the table's own column names, row_of(),
 * mark_read() and the "Alert" view (statements(), idempotent). bookkeeping.ts runs it in one
 * transaction. Apart because it is long, and it is what one reads when a table or a trigger
 * function changes.
 */
import pg from 'pg';
import type { Kind } from './installed.js';
import { SCHEMA, tableSql, type Mapping } from './mapping.js';
import { STATE_FUNCTIONS, stateStatements } from './state-sql.js';
import { triggerStatements } from './triggers.js';

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

/**
 * The bookkeeping values of a row `r` of the table, in "AlertChange"'s column order (key, id,
 * "userId", type, read, "createdAt"); `created` when the table has no creation time.
 */
export function values(m: Mapping, r: string, created: string): string {
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
export function statements(m: Mapping, channel: string, kind: Kind): string[] {
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
    // Whether an alert was deleted or moved away before (`replaced`, src/db/change-rows.ts), asked
    // for every alert row of a read in id order: one probe, however many tombstones its user, or
    // all users, have. Written only by deletes and moves.
    `CREATE INDEX IF NOT EXISTS "AlertTombstone_userId_id_idx" ON ${s}."AlertTombstone" ("userId", id)`,
    // As for "AlertChange" below: a transaction deletes few rows, even after one deleted many
    // (statistics would then say "all rows", and a read would look up every alert of the table
    // once instead of the few deletes' users' own).
    `ALTER TABLE ${s}."AlertTombstone" ALTER COLUMN txid SET (n_distinct = -1)`,
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
    // Live reads find a transaction's rows; resumes a user's since a transaction (the bell's
    // list and the counts have their indexes in state-sql.ts).
    `CREATE INDEX IF NOT EXISTS "AlertChange_changedTxid_idx" ON ${s}."AlertChange" ("changedTxid")`,
    // Live reads are planned once, generically: the planner must assume a transaction changes
    // few rows, which is how alerts are written, even right after an install gave every
    // existing row the same transaction (statistics would then say "all rows", and every read
    // would scan the table).
    `ALTER TABLE ${s}."AlertChange" ALTER COLUMN "changedTxid" SET (n_distinct = -1), ALTER COLUMN txid SET (n_distinct = -1)`,
    `CREATE INDEX IF NOT EXISTS "AlertChange_userId_changedTxid_idx" ON ${s}."AlertChange" ("userId", "changedTxid")`,
    ...stateStatements(DEFINER, dollarQuoted),
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
       ON CONFLICT (key) DO UPDATE SET "userId" = excluded."userId", type = excluded.type, read = excluded.read, seen = false, archived = false,
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
                -- A new owner gets the alert unseen and in their list.
                seen = c.seen AND c."userId" IS NOT DISTINCT FROM p."userId",
                archived = c.archived AND c."userId" IS NOT DISTINCT FROM p."userId",
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
    // through the bookkeeping's counts index. NULL ids: all of the user's in the list (archived
    // ones stay as they are).
    `CREATE OR REPLACE FUNCTION ${s}.mark_read(p_user text, p_ids text[]) RETURNS bigint LANGUAGE plpgsql AS ${dollarQuoted(`
     DECLARE n bigint;
     BEGIN
       ${
         m.readColumn
           ? `UPDATE ${t} r SET ${q(m.readColumn)} = true FROM ${s}."AlertChange" c
           WHERE c.key = ${col('r', m.idColumn)} AND c."userId" = p_user AND NOT c.read AND (CASE WHEN p_ids IS NULL THEN NOT c.archived ELSE c.id = ANY(p_ids) END);
         GET DIAGNOSTICS n = ROW_COUNT;
         RETURN n;`
           : `RAISE EXCEPTION 'pgbell: read state is not tracked on ${m.table.replace(/'/g, "''")}' USING ERRCODE = '0A000';`
       }
     END `)}`,
    // The table in the shape pgbell reads, its bookkeeping beside it.
    `DROP VIEW IF EXISTS ${s}."Alert"`,
    kind === 'install'
      ? `CREATE VIEW ${s}."Alert" AS SELECT
       c.key, c.id, c."userId", c.type, f.title, f.message, f.link, f.data, c.read, c."createdAt", c.txid, c."changedTxid", c.seq,
       c.seen OR c.read AS seen, c.archived
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
       c.seq,
       c.seen OR c.read AS seen,
       c.archived
     FROM ${t} t JOIN ${s}."AlertChange" c ON c.key = ${col('t', m.idColumn)}`,
    `DROP FUNCTION IF EXISTS ${s}.row_data(anyelement)`,
    `DROP FUNCTION IF EXISTS ${s}.row_data_of(anyelement)`,
    ...triggerStatements(m, channel),
    // Nothing of pgbell's is anyone's but its owner's: no role gains a way into its tables
    // through its functions.
    `REVOKE ALL ON SCHEMA ${s} FROM PUBLIC`,
    ...[...TRIGGER_FUNCTIONS, ...STATE_FUNCTIONS].map((f) => `REVOKE ALL ON FUNCTION ${s}.${f} FROM PUBLIC`),
  ];
}
