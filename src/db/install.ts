/**
 * `pgbell install`: puts pgbell onto a notifications table it did not create.
 *
 * Everything pgbell needs is added in one transaction and nothing else is touched:
 * - on the table: three columns (`pgbell_txid`, `pgbell_changed_txid`, `pgbell_seq`, plus
 *   `pgbell_created_at` when no --created-column is named), their indexes, and three triggers
 *   named `pgbell_*`;
 * - schema `pgbell`: a view `pgbell."Alert"` that presents the table in the shape pgbell reads
 *   (the same columns as its own "Alert"), the tombstones, pgbell_state, pgbell_revocation,
 *   the trigger functions and `pgbell.install` (what was installed, for `uninstall`).
 *
 * Every pgbell connection puts schema `pgbell` first on its search_path (src/db/connect.ts),
 * so the daemon's queries read the view without knowing which table is behind it.
 * `pgbell uninstall` drops the triggers, the columns (their indexes go with them) and the schema.
 */
import pg from 'pg';
import { inTransaction, withSchemaLock } from './lock.js';

export const INSTALL_SCHEMA = 'pgbell';

/** What `pgbell install` is told; column names are the table's own. */
export interface InstallOptions {
  /** `notifications` or `schema.notifications`. */
  table: string;
  userColumn: string;
  /** Default: the table's single-column primary key. */
  idColumn?: string | undefined;
  typeColumn?: string | undefined;
  titleColumn?: string | undefined;
  messageColumn?: string | undefined;
  linkColumn?: string | undefined;
  /** A boolean column; without one, every alert counts as unread and cannot be marked read. */
  readColumn?: string | undefined;
  /** A timestamp column for the bell's order; without one, `pgbell_created_at` is added. */
  createdColumn?: string | undefined;
  channel: string;
}

export interface InstallResult {
  /** false: already installed with the same options (nothing changed). */
  installed: boolean;
  /** The channel was changed on an existing install. */
  channelChanged: boolean;
  /** Already installed by an older pgbell: its trigger functions were brought up to date. */
  refreshed: boolean;
  table: string;
}

/** The columns install adds; named so they cannot be mistaken for the app's. */
const ADDED = ['pgbell_txid', 'pgbell_changed_txid', 'pgbell_seq'] as const;
const CREATED = 'pgbell_created_at';

const q = pg.escapeIdentifier;
const lit = pg.escapeLiteral;

type Stored = Required<Omit<InstallOptions, 'table' | 'channel'>> & { table: string };

/** The table pgbell is installed on (`schema.table`), or null: a database pgbell migrated, or none. */
export async function installedTable(run: (text: string) => Promise<{ rows: unknown[] }>): Promise<string | null> {
  const { rows } = await run(`SELECT to_regclass('${INSTALL_SCHEMA}.install') IS NOT NULL AS present`);
  if (!(rows[0] as { present: boolean }).present) return null;
  const res = await run(`SELECT options->>'table' AS t FROM ${INSTALL_SCHEMA}.install`);
  return (res.rows[0] as { t: string } | undefined)?.t ?? null;
}

/**
 * The triggers that notify on an installed table, as (relation, trigger name) SQL pairs for
 * src/db/migrate.ts's channel check.
 */
export const INSTALLED_NOTIFY_TRIGGERS = [
  `((SELECT "table" FROM ${INSTALL_SCHEMA}.install)::oid, 'pgbell_900_notify')`,
  `((SELECT "table" FROM ${INSTALL_SCHEMA}.install)::oid, 'pgbell_900_notify_delete')`,
  `('${INSTALL_SCHEMA}.pgbell_revocation'::regclass::oid, '_900_notify')`,
];

export async function install(connectionString: string, opts: InstallOptions): Promise<InstallResult> {
  return withSchemaLock(connectionString, 'pgbell-install', async (client) => {
    const target = await describeTable(client, opts.table);
    const cols = new Map(target.columns.map((c) => [c.name, c.type]));
    const need = (flag: string, name: string | undefined, check?: (type: string) => string | null): string | null => {
      if (name === undefined) return null;
      const type = cols.get(name);
      if (type === undefined) throw new Error(`${flag}: table ${target.name} has no column "${name}" (it has ${[...cols.keys()].join(', ')})`);
      const problem = check?.(type);
      if (problem) throw new Error(`${flag}: column "${name}" is ${type}; ${problem}`);
      return name;
    };
    const idColumn = need('--id-column', opts.idColumn ?? target.primaryKey ?? undefined);
    if (idColumn === null) throw new Error(`--id-column: table ${target.name} has no single-column primary key; name the id column`);
    const stored: Stored = {
      table: target.name,
      idColumn,
      userColumn: need('--user-column', opts.userColumn)!,
      typeColumn: need('--type-column', opts.typeColumn) ?? '',
      titleColumn: need('--title-column', opts.titleColumn) ?? '',
      messageColumn: need('--message-column', opts.messageColumn) ?? '',
      linkColumn: need('--link-column', opts.linkColumn) ?? '',
      readColumn: need('--read-column', opts.readColumn, (t) => (t === 'boolean' ? null : 'it must be boolean')) ?? '',
      createdColumn:
        need('--created-column', opts.createdColumn, (t) => (t.startsWith('timestamp') ? null : 'it must be a timestamp')) ?? '',
    };

    const { rows: migrated } = await client.query<{ m: boolean }>(`SELECT to_regclass('public.pgbell_migrations') IS NOT NULL AS m`);
    if (migrated[0]!.m) {
      throw new Error('this database has pgbell\'s own "Alert" table (`pgbell migrate` ran here); install is for databases that keep alerts in a table of their own');
    }

    const existing = await readInstall(client);
    if (existing) {
      // jsonb does not keep key order: compare key by key.
      const same = (Object.keys(stored) as Array<keyof Stored>).every((k) => existing.options[k] === stored[k]);
      if (!same) {
        throw new Error(`pgbell is already installed on ${existing.options.table} with other options; run \`pgbell uninstall\` first`);
      }
      // The same install from an older pgbell: its trigger functions are brought up to date.
      const refreshed = await refreshFunctions(client, stored, existing.channel);
      if (existing.channel === opts.channel) return { installed: false, channelChanged: false, refreshed, table: target.name };
      await inTransaction(client, async () => {
        for (const statement of triggerStatements(stored, opts.channel)) await client.query(statement);
        await client.query(`UPDATE ${INSTALL_SCHEMA}.install SET channel = $1`, [opts.channel]);
      });
      return { installed: false, channelChanged: true, refreshed, table: target.name };
    }

    for (const c of [...ADDED, ...(stored.createdColumn ? [] : [CREATED])]) {
      if (cols.has(c)) throw new Error(`table ${target.name} already has a column "${c}"; pgbell install adds it and will not reuse one it did not create`);
    }
    await inTransaction(client, async () => {
      for (const statement of installStatements(stored, opts.channel)) await client.query(statement);
    });
    return { installed: true, channelChanged: false, refreshed: false, table: target.name };
  });
}

/** Removes exactly what install added. Returns the table it was on, or null if pgbell was not installed. */
export async function uninstall(connectionString: string): Promise<string | null> {
  return withSchemaLock(connectionString, 'pgbell-uninstall', async (client) => {
    const existing = await readInstall(client);
    if (!existing) return null;
    const t = existing.tableSql;
    await inTransaction(client, async () => {
      for (const trigger of ['pgbell_100_changed', 'pgbell_900_notify', 'pgbell_900_notify_delete']) {
        await client.query(`DROP TRIGGER IF EXISTS ${trigger} ON ${t}`);
      }
      // The schema first: its view reads the columns.
      await client.query(`DROP SCHEMA ${INSTALL_SCHEMA} CASCADE`);
      const schema = q(existing.options.table.split('.')[0]!);
      for (const suffix of INDEXES) await client.query(`DROP INDEX IF EXISTS ${schema}.${q(indexOf(existing.options, suffix))}`);
      const added = [...ADDED, ...(existing.options.createdColumn ? [] : [CREATED])];
      await client.query(`ALTER TABLE ${t} ${added.map((c) => `DROP COLUMN IF EXISTS ${c}`).join(', ')}`);
    });
    return existing.options.table;
  });
}

function installStatements(o: Stored, channel: string): string[] {
  const t = tableSql(o.table);
  const col = (name: string) => `t.${q(name)}`;
  const userText = `(${q(o.userColumn)}::text)`;
  const created = o.createdColumn || CREATED;
  const indexName = (suffix: (typeof INDEXES)[number]) => q(indexOf(o, suffix));
  const tombstone = `${INSTALL_SCHEMA}."AlertTombstone"`;
  // An empty channel is poll mode: no NOTIFY (see sql/000006_poll_mode.sql).
  const notifyBody = `IF TG_ARGV[0] <> '' THEN
      PERFORM pg_notify(TG_ARGV[0],
        '{"txid":"' || pg_current_xact_id()::text || '","xmin":"' || pg_snapshot_xmin(pg_current_snapshot())::text || '"}');
      END IF;`;
  return [
    `CREATE SCHEMA ${INSTALL_SCHEMA}`,
    `COMMENT ON SCHEMA ${INSTALL_SCHEMA} IS 'pgbell: created by pgbell install, dropped by pgbell uninstall'`,
    `CREATE TABLE ${INSTALL_SCHEMA}.install (
       one         boolean PRIMARY KEY DEFAULT true CHECK (one),
       "table"     regclass NOT NULL,
       options     jsonb NOT NULL,
       channel     text NOT NULL,
       version     int NOT NULL DEFAULT 1,
       "installedAt" timestamptz NOT NULL DEFAULT now()
     )`,
    `INSERT INTO ${INSTALL_SCHEMA}.install ("table", options, channel) VALUES (${lit(t)}::regclass, ${lit(JSON.stringify(o))}, ${lit(channel)})`,
    // The same bookkeeping pgbell's migrations create for its own table (000003–000005).
    `CREATE TABLE ${INSTALL_SCHEMA}.pgbell_state (
       one          boolean PRIMARY KEY DEFAULT true CHECK (one),
       "databaseId" text NOT NULL DEFAULT substr(md5(gen_random_uuid()::text), 1, 8),
       "prunedTxid" xid8 NOT NULL DEFAULT '0',
       "relayTxid"  xid8 NULL
     )`,
    `INSERT INTO ${INSTALL_SCHEMA}.pgbell_state DEFAULT VALUES`,
    `CREATE TABLE ${tombstone} (
       id          text NOT NULL,
       "userId"    text NOT NULL,
       txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
       "deletedAt" timestamptz NOT NULL DEFAULT now()
     )`,
    `CREATE INDEX ON ${tombstone} (txid)`,
    `CREATE INDEX ON ${tombstone} ("userId", txid)`,
    `CREATE TABLE ${INSTALL_SCHEMA}.pgbell_revocation (
       id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       "userId"    text NOT NULL CHECK (length("userId") <= 1000),
       before      timestamptz NOT NULL DEFAULT now(),
       "createdAt" timestamptz NOT NULL DEFAULT now()
     )`,
    `CREATE INDEX ON ${INSTALL_SCHEMA}.pgbell_revocation ("userId", before DESC)`,
    `CREATE FUNCTION ${INSTALL_SCHEMA}.tg_alert__notify() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       ${notifyBody}
       RETURN NULL;
     END $$`,
    // A change of owner is a delete for the old one and a new alert for the new one (see
    // sql/000008_owner_change.sql).
    `CREATE FUNCTION ${INSTALL_SCHEMA}.tg_alert__changed() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       NEW.pgbell_changed_txid := pg_current_xact_id();
       IF NEW.${q(o.userColumn)} IS DISTINCT FROM OLD.${q(o.userColumn)} THEN
         NEW.pgbell_txid := pg_current_xact_id();
         INSERT INTO ${tombstone} (id, "userId") VALUES (OLD.${q(o.idColumn)}::text, OLD.${q(o.userColumn)}::text);
       END IF;
       RETURN NEW;
     END $$`,
    // The column names are baked in: one install per database, so one function.
    `CREATE FUNCTION ${INSTALL_SCHEMA}.tg_alert__deleted() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       INSERT INTO ${tombstone} (id, "userId") SELECT o.${q(o.idColumn)}::text, o.${q(o.userColumn)}::text FROM old_rows o;
       IF FOUND THEN
         ${notifyBody}
       END IF;
       RETURN NULL;
     END $$`,
    `CREATE FUNCTION ${INSTALL_SCHEMA}.tg_revocation__notify() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF TG_ARGV[0] <> '' THEN
         PERFORM pg_notify(TG_ARGV[0], json_build_object(
           'revoke', NEW."userId",
           'before', floor(extract(epoch FROM NEW.before))::bigint::text)::text);
       END IF;
       RETURN NULL;
     END $$`,
    // Volatile defaults rewrite the table once: existing rows get this transaction's id, which
    // is older than any cursor a client can hold, so they are never replayed.
    `ALTER TABLE ${t}
       ADD COLUMN pgbell_txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
       ADD COLUMN pgbell_changed_txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
       ADD COLUMN pgbell_seq bigint GENERATED BY DEFAULT AS IDENTITY${o.createdColumn ? '' : `,
       ADD COLUMN ${CREATED} timestamptz NOT NULL DEFAULT now()`}`,
    // The daemon compares user ids as text; expression indexes keep those reads indexed
    // whatever the column's type (uuid, bigint, text).
    `CREATE INDEX ${indexName('pgbell_changed_idx')} ON ${t} (pgbell_changed_txid)`,
    `CREATE INDEX ${indexName('pgbell_user_changed_idx')} ON ${t} (${userText}, pgbell_changed_txid)`,
    `CREATE INDEX ${indexName('pgbell_user_created_idx')} ON ${t} (${userText}, ${q(created)} DESC)`,
    ...(o.readColumn ? [`CREATE INDEX ${indexName('pgbell_user_unread_idx')} ON ${t} (${userText}) WHERE NOT ${q(o.readColumn)}`] : []),
    // The table in the shape of pgbell's own "Alert". `read` stays a plain column reference so
    // that marking read (an UPDATE through the view) writes the table's own column.
    `CREATE VIEW ${INSTALL_SCHEMA}."Alert" AS SELECT
       ${col(o.idColumn)}::text AS id,
       ${col(o.userColumn)}::text AS "userId",
       ${o.typeColumn ? `coalesce(${col(o.typeColumn)}::text, 'general')` : `'general'::text`} AS type,
       ${o.titleColumn ? `coalesce(${col(o.titleColumn)}::text, '')` : `''::text`} AS title,
       ${o.messageColumn ? `coalesce(${col(o.messageColumn)}::text, '')` : `''::text`} AS message,
       ${o.linkColumn ? `${col(o.linkColumn)}::text` : 'NULL::text'} AS link,
       to_jsonb(t) - ARRAY['pgbell_txid', 'pgbell_changed_txid', 'pgbell_seq', '${CREATED}'] AS data,
       ${o.readColumn ? col(o.readColumn) : 'false'} AS read,
       ${col(created)}::timestamptz AS "createdAt",
       t.pgbell_txid AS txid,
       t.pgbell_changed_txid AS "changedTxid",
       t.pgbell_seq AS seq
     FROM ${t} t`,
    `CREATE TRIGGER pgbell_100_changed BEFORE UPDATE ON ${t}
       FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION ${INSTALL_SCHEMA}.tg_alert__changed()`,
    ...triggerStatements(o, channel),
  ];
}

/** Re-creates install's trigger functions as this version writes them; true if any changed. */
async function refreshFunctions(client: pg.Client, o: Stored, channel: string): Promise<boolean> {
  const digest = async () =>
    (
      await client.query<{ d: string | null }>(
        `SELECT md5(string_agg(pg_get_functiondef(p.oid), '' ORDER BY p.proname)) AS d FROM pg_proc p WHERE p.pronamespace = ${lit(INSTALL_SCHEMA)}::regnamespace`,
      )
    ).rows[0]!.d;
  const before = await digest();
  await inTransaction(client, async () => {
    for (const statement of installStatements(o, channel)) {
      if (statement.startsWith('CREATE FUNCTION')) await client.query(statement.replace('CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION'));
    }
  });
  return (await digest()) !== before;
}

/** The triggers that carry the channel: created by install, replaced when the channel changes. */
function triggerStatements(o: Stored, channel: string): string[] {
  const t = tableSql(o.table);
  return [
    `CREATE OR REPLACE TRIGGER pgbell_900_notify AFTER INSERT OR UPDATE ON ${t}
       FOR EACH STATEMENT EXECUTE FUNCTION ${INSTALL_SCHEMA}.tg_alert__notify(${lit(channel)})`,
    `CREATE OR REPLACE TRIGGER pgbell_900_notify_delete AFTER DELETE ON ${t}
       REFERENCING OLD TABLE AS old_rows
       FOR EACH STATEMENT EXECUTE FUNCTION ${INSTALL_SCHEMA}.tg_alert__deleted(${lit(channel)})`,
    `CREATE OR REPLACE TRIGGER _900_notify AFTER INSERT ON ${INSTALL_SCHEMA}.pgbell_revocation
       FOR EACH ROW EXECUTE FUNCTION ${INSTALL_SCHEMA}.tg_revocation__notify(${lit(channel)})`,
  ];
}

/** The indexes install creates, by suffix; those on the added columns would go with them, the others would not. */
const INDEXES = ['pgbell_changed_idx', 'pgbell_user_changed_idx', 'pgbell_user_created_idx', 'pgbell_user_unread_idx'] as const;

/** An index's name: the table's, then the suffix, within Postgres's 63 bytes. */
function indexOf(o: Stored, suffix: (typeof INDEXES)[number]): string {
  return `${o.table.split('.').pop()!}_${suffix}`.slice(0, 63);
}

/** `schema.table` as stored → quoted SQL. */
function tableSql(name: string): string {
  const [schema, table] = name.split('.') as [string, string];
  return `${q(schema)}.${q(table)}`;
}

interface TableInfo {
  /** schema.table, unquoted. */
  name: string;
  primaryKey: string | null;
  columns: Array<{ name: string; type: string }>;
}

async function describeTable(client: pg.Client, table: string): Promise<TableInfo> {
  let oid: string | null;
  try {
    oid = (await client.query<{ oid: string | null }>('SELECT to_regclass($1)::oid::text AS oid', [table])).rows[0]!.oid;
  } catch (err) {
    throw new Error(`--table: "${table}" is not a table name: ${(err as Error).message}`);
  }
  if (oid === null) throw new Error(`--table: no table "${table}" in this database`);
  const { rows: rel } = await client.query<{ schema: string; name: string; kind: string }>(
    `SELECT n.nspname AS schema, c.relname AS name, c.relkind AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`,
    [oid],
  );
  const r = rel[0]!;
  if (r.kind !== 'r' && r.kind !== 'p') throw new Error(`--table: "${table}" is not a plain table (a view or foreign table cannot carry triggers that see every write)`);
  if (r.schema === INSTALL_SCHEMA) throw new Error(`--table: schema "${INSTALL_SCHEMA}" belongs to pgbell`);
  if (r.name.includes('.') || r.schema.includes('.')) throw new Error(`--table: pgbell cannot install on a name containing a dot ("${r.schema}"."${r.name}")`);
  const { rows: columns } = await client.query<{ name: string; type: string }>(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [oid],
  );
  const { rows: pk } = await client.query<{ name: string }>(
    `SELECT a.attname AS name FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = $1 AND i.indisprimary`,
    [oid],
  );
  return { name: `${r.schema}.${r.name}`, primaryKey: pk.length === 1 ? pk[0]!.name : null, columns };
}

async function readInstall(client: pg.Client): Promise<{ options: Stored; channel: string; tableSql: string } | null> {
  const { rows } = await client.query<{ present: boolean }>(`SELECT to_regclass('${INSTALL_SCHEMA}.install') IS NOT NULL AS present`);
  if (!rows[0]!.present) return null;
  const res = await client.query<{ options: Stored; channel: string }>(`SELECT options, channel FROM ${INSTALL_SCHEMA}.install`);
  const row = res.rows[0];
  return row ? { ...row, tableSql: tableSql(row.options.table) } : null;
}
