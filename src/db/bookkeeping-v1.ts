/**
 * Version 1 of the bookkeeping kept it in columns of the table (and, for `pgbell migrate`, in
 * schema public): telling that it is there, moving its rows into "AlertChange" and dropping what
 * it added. Only applyBookkeeping's upgrade path uses this.
 */
import pg from 'pg';
import { values } from './bookkeeping-sql.js';
import { SCHEMA, tableSql, type Mapping } from './mapping.js';

const q = pg.escapeIdentifier;

export async function hasColumn(client: pg.Client, table: string, column: string): Promise<boolean> {
  const { rows } = await client.query(`SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped`, [table, column]);
  return rows.length > 0;
}

/**
 * Version 1 kept the bookkeeping in columns of the table: it moves into "AlertChange" with its
 * transaction ids, so cursors from before the upgrade resume exactly.
 */
export async function adopt(client: pg.Client, m: Mapping, legacy: { txid: string; changed: string; seq: string; created: string | null }): Promise<void> {
  const t = tableSql(m.table);
  await client.query(`INSERT INTO ${SCHEMA}."AlertChange" (key, id, "userId", type, read, "createdAt", txid, "changedTxid", seq)
    SELECT ${values(m, 'r', legacy.created ? `r.${q(legacy.created)}` : 'now()')}, r.${q(legacy.txid)}, r.${q(legacy.changed)}, r.${q(legacy.seq)} FROM ${t} r
    WHERE r.${q(m.userColumn)} IS NOT NULL
    ON CONFLICT (key) DO NOTHING`);
  await client.query(`SELECT setval(pg_get_serial_sequence('${SCHEMA}."AlertChange"', 'seq'), greatest(1, (SELECT max(seq) FROM ${SCHEMA}."AlertChange")))`);
}

/** What migrations 000002–000008 added to "Alert" and public, now in schema pgbell. */
export async function dropLegacyModel(client: pg.Client): Promise<void> {
  for (const trigger of ['_100_changed', '_900_notify', '_900_notify_delete']) await client.query(`DROP TRIGGER IF EXISTS ${trigger} ON public."Alert"`);
  for (const fn of ['tg_alert__changed()', 'tg_alert__notify()', 'tg_alert__deleted()', 'tg_revocation__notify()', 'pgbell_notify_change(text)']) {
    await client.query(`DROP FUNCTION IF EXISTS public.${fn}`);
  }
  // Their indexes go with them.
  await client.query(`ALTER TABLE public."Alert" DROP COLUMN txid, DROP COLUMN "changedTxid", DROP COLUMN seq`);
}

/** What `pgbell install` of version 1 added to the app's table. */
export async function dropLegacyInstall(client: pg.Client, m: Mapping): Promise<void> {
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
