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
 *     mark_read()        marking read, through the bookkeeping's counts index;
 *   and the trigger functions, written for the table's own column names.
 *
 * Every trigger is per statement and writes its bookkeeping in one statement: a 10,000-row
 * INSERT costs one INSERT into "AlertChange", not 10,000. Every pgbell connection puts schema
 * `pgbell` first on its search_path (src/db/connect.ts), so the daemon reads the view as "Alert".
 *
 * This file applies and removes the bookkeeping. Its pieces live beside it: mapping.ts (schema
 * pgbell's name, the column mapping), installed.ts (what migrate or install left),
 * bookkeeping-sql.ts (the statements), triggers.ts (the triggers and their channel),
 * bookkeeping-v1.ts (upgrading version 1), publication.ts (WAL mode) and foreign-txids.ts (a
 * restored database); they are re-exported here for the files that import them from here.
 */
import pg from 'pg';
import { statements, values } from './bookkeeping-sql.js';
import { adopt, dropLegacyInstall, dropLegacyModel, hasColumn } from './bookkeeping-v1.js';
import { BOOKKEEPING_VERSION, readSource, type Kind } from './installed.js';
import { inTransaction } from './lock.js';
import { SCHEMA, tableSql, type Mapping } from './mapping.js';
import { PUBLICATION } from './publication.js';
import { TABLE_TRIGGERS } from './triggers.js';

export { dollarQuoted } from './bookkeeping-sql.js';
export { renormalizeForeignTxids, RestampError } from './foreign-txids.js';
export { BOOKKEEPING_VERSION, databaseMode, readSource, type Kind, type Source } from './installed.js';
export { MODEL_MAPPING, SCHEMA, tableSql, type Mapping } from './mapping.js';
export { PUBLICATION, publicationProblem, publishedTables, setPublication } from './publication.js';
export { NOTIFY_TRIGGERS, setChannel, TABLE_TRIGGERS, triggerChannel } from './triggers.js';

const VERSION = BOOKKEEPING_VERSION;

const q = pg.escapeIdentifier;
const lit = pg.escapeLiteral;

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
    // An older pgbell must not take back what a newer one built (its daemons read columns
    // and functions this one does not know).
    if (existing && existing.version > VERSION) {
      throw new Error(`schema ${SCHEMA} is at bookkeeping version ${existing.version}, made by a newer pgbell than this one (version ${VERSION}); run the newer pgbell`);
    }
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

/** Removes the triggers and schema pgbell: the table is left exactly as it was. */
export async function removeBookkeeping(client: pg.Client, m: Mapping): Promise<void> {
  const t = tableSql(m.table);
  await inTransaction(client, async () => {
    for (const trigger of TABLE_TRIGGERS) await client.query(`DROP TRIGGER IF EXISTS ${trigger} ON ${t}`);
    await client.query(`DROP PUBLICATION IF EXISTS ${q(PUBLICATION)}`);
    await client.query(`DROP SCHEMA ${SCHEMA} CASCADE`);
  });
}
