/**
 * The triggers pgbell puts on the table (one per event) and on revocations, and the NOTIFY
 * channel they carry: creating them, pointing them at another channel, reading back which one
 * they notify on. Apart from the rest of the bookkeeping because the channel changes on its own
 * (a change of mode re-points it) and doctor checks it on its own.
 */
import pg from 'pg';
import { inTransaction } from './lock.js';
import { readSource } from './installed.js';
import { SCHEMA, tableSql, type Mapping, type Run } from './mapping.js';

const lit = pg.escapeLiteral;

/** The triggers on the table, by event. Names sort after most apps' own (they run in name order). */
export const TABLE_TRIGGERS = ['pgbell_insert', 'pgbell_update', 'pgbell_delete', 'pgbell_truncate'] as const;

/**
 * The triggers that carry the channel, as (relation, trigger name) SQL pairs: the table's four
 * and the revocation table's.
 */
export const NOTIFY_TRIGGERS = [
  ...TABLE_TRIGGERS.map((t) => `((SELECT "table" FROM ${SCHEMA}.install)::oid, '${t}')`),
  `('${SCHEMA}.pgbell_revocation'::regclass::oid, '_900_notify')`,
];

/** The triggers: on the table, one per event (transition tables need that), and on revocations. */
export function triggerStatements(m: Mapping, channel: string): string[] {
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

/** Points the triggers at another channel ('' sends no NOTIFY: poll mode), atomically. */
export async function setChannel(client: pg.Client, m: Mapping, channel: string): Promise<void> {
  await inTransaction(client, async () => {
    for (const statement of triggerStatements(m, channel)) await client.query(statement);
    await client.query(`UPDATE ${SCHEMA}.install SET channel = $1`, [channel]);
  });
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
