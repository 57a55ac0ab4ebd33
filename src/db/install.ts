/**
 * `pgbell install`: puts pgbell onto a notifications table it did not create.
 *
 * The table gets pgbell's four triggers and nothing else; everything else lives in schema
 * `pgbell` (src/db/bookkeeping.ts, the same bookkeeping `pgbell migrate` gives pgbell's own
 * "Alert"). `pgbell uninstall` drops the triggers and the schema: the table's catalog is as
 * before.
 */
import pg from 'pg';
import { applyBookkeeping, readSource, removeBookkeeping, renormalizeForeignTxids, SCHEMA, setChannel, setPublication, type Mapping } from './bookkeeping.js';
import { inTransaction, withSchemaLock } from './lock.js';

export const INSTALL_SCHEMA = SCHEMA;

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
  /** A timestamp column for the bell's order; without one, the time pgbell first saw the row. */
  createdColumn?: string | undefined;
  channel: string;
  /** WAL mode: the publication the daemon streams (see setPublication). */
  publish?: boolean;
}

export interface InstallResult {
  /** false: already installed with the same options (nothing changed). */
  installed: boolean;
  /** The channel was changed on an existing install. */
  channelChanged: boolean;
  /** The publication was created or dropped (WAL mode turned on or off). */
  publicationChanged: boolean;
  /** Already installed by an older pgbell: brought up to date (its functions, or its bookkeeping moved out of the table). */
  refreshed: boolean;
  table: string;
  /** The role that owns pgbell's functions: the triggers run with its rights. */
  owner: string;
  /** Bookkeeping rows re-stamped because their transaction ids are in this server's future (a restore). */
  restamped: number;
}

/** The table pgbell is installed on (`schema.table`), or null: a database pgbell migrated, or none. */
export async function installedTable(run: (text: string) => Promise<{ rows: unknown[] }>): Promise<string | null> {
  const source = await readSource(run);
  return source?.kind === 'install' ? source.mapping.table : null;
}

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
    if (target.primaryKey !== idColumn && !target.unique.includes(idColumn)) {
      throw new Error(`--id-column: column "${idColumn}" of ${target.name} is not unique (no primary key or unique constraint on it alone); pgbell keys its bookkeeping by it`);
    }
    if (target.nullable.includes(idColumn)) {
      throw new Error(`--id-column: column "${idColumn}" of ${target.name} may be NULL, and a row without an id cannot be told apart; make it NOT NULL or name another column`);
    }
    const mapping: Mapping = {
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
      dataColumn: '',
    };

    const run = (text: string) => client.query(text);
    const owner = (await client.query<{ r: string }>('SELECT current_user AS r')).rows[0]!.r;
    // One transaction: the triggers, schema pgbell and (WAL mode) the publication commit
    // together, and a refusal (a table WAL mode cannot publish) leaves nothing behind.
    const result = await inTransaction(client, async (): Promise<Omit<InstallResult, 'restamped'>> => {
      const existing = await readSource(run);
      const { rows: legacy } = await client.query<{ m: boolean }>(`SELECT to_regclass('public.pgbell_migrations') IS NOT NULL AS m`);
      if (existing?.kind === 'migrate' || legacy[0]!.m) {
        throw new Error('this database has pgbell\'s own "Alert" table (`pgbell migrate` ran here); install is for databases that keep alerts in a table of their own');
      }
      if (existing) {
        // jsonb does not keep key order: compare key by key.
        const same = (Object.keys(mapping) as Array<keyof Mapping>).every((k) => existing.mapping[k] === mapping[k]);
        if (!same) {
          throw new Error(`pgbell is already installed on ${existing.mapping.table} with other options; run \`pgbell uninstall\` first`);
        }
        // The same install from an older pgbell is brought up to date, on its own channel.
        const refreshed = (await applyBookkeeping(client, mapping, existing.channel, 'install')) || existing.version < 2;
        const channelChanged = existing.channel !== opts.channel;
        if (channelChanged) await setChannel(client, mapping, opts.channel);
        const publicationChanged = await setPublication(client, mapping, opts.publish ?? false);
        return { installed: false, channelChanged, publicationChanged, refreshed, table: target.name, owner };
      }
      await applyBookkeeping(client, mapping, opts.channel, 'install');
      await setPublication(client, mapping, opts.publish ?? false);
      return { installed: true, channelChanged: false, publicationChanged: false, refreshed: false, table: target.name, owner };
    });
    // A database restored from another cluster: see renormalizeForeignTxids.
    return { ...result, restamped: await renormalizeForeignTxids(client) };
  });
}

/** Removes exactly what install added. Returns the table it was on, or null if pgbell was not installed. */
export async function uninstall(connectionString: string): Promise<string | null> {
  return withSchemaLock(connectionString, 'pgbell-uninstall', async (client) => {
    const existing = await readSource((text) => client.query(text));
    if (!existing || existing.kind !== 'install') return null;
    await removeBookkeeping(client, existing.mapping);
    return existing.mapping.table;
  });
}

interface TableInfo {
  /** schema.table, unquoted. */
  name: string;
  primaryKey: string | null;
  /** Columns with a unique constraint or index of their own. */
  unique: string[];
  /** Columns without NOT NULL. */
  nullable: string[];
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
  const { rows: columns } = await client.query<{ name: string; type: string; notnull: boolean }>(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type, attnotnull AS notnull FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [oid],
  );
  const { rows: pk } = await client.query<{ name: string }>(
    `SELECT a.attname AS name FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = $1 AND i.indisprimary`,
    [oid],
  );
  const { rows: unique } = await client.query<{ name: string }>(
    `SELECT a.attname AS name FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
      WHERE i.indrelid = $1 AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL`,
    [oid],
  );
  return { name: `${r.schema}.${r.name}`, primaryKey: pk.length === 1 ? pk[0]!.name : null, unique: unique.map((u) => u.name), nullable: columns.filter((c) => !c.notnull).map((c) => c.name), columns: columns.map(({ name, type }) => ({ name, type })) };
}
