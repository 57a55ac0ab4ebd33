/**
 * `pgbell doctor` in WAL mode: what the replication stream needs from the server, and the slots
 * pgbell owns with the WAL each keeps.
 */
import pg from 'pg';
import { publicationProblem, readSource } from '../db/bookkeeping.js';
import type { Check } from '../check.js';
import { explain } from './wal.js';

type Run = (text: string) => Promise<{ rows: unknown[] }>;

export async function walChecks(run: Run, listenUrl: string, which: string): Promise<Check[]> {
  const checks: Check[] = [];
  const one = async <T>(text: string) => (await run(text)).rows[0] as T;

  const { level } = await one<{ level: string }>(`SELECT current_setting('wal_level') AS level`);
  checks.push({
    name: 'wal_level',
    ok: level === 'logical',
    detail: level === 'logical' ? 'logical' : explain(new Error('logical decoding requires wal_level >= logical'))!.replace('WAL mode needs', `is ${level}; WAL mode needs`),
  });

  const role = await one<{ name: string; ok: boolean }>(`
    SELECT current_user AS name, r.rolreplication OR r.rolsuper
        OR (to_regrole('rds_replication') IS NOT NULL AND pg_has_role(current_user, 'rds_replication', 'member')) AS ok
      FROM pg_roles r WHERE r.rolname = current_user`);
  checks.push({ name: 'replication role', ok: role.ok, detail: role.ok ? `${role.name} may start logical replication` : explain(new Error('must be superuser or replication role'))!.replace(/<role>/g, role.name) });

  const source = await readSource(run);
  if (source) {
    const problem = await publicationProblem(run, source.mapping);
    checks.push({
      name: 'publication',
      ok: problem === null,
      detail: problem === null ? `pgbell publishes ${source.mapping.table} and pgbell's bookkeeping` : `${problem === 'missing' ? 'missing' : `altered: ${problem}`}: run \`pgbell ${source.kind}\` with PGBELL_MODE=wal`,
    });
  }

  const room = await one<{ slots: number; used: number; senders: number }>(`
    SELECT current_setting('max_replication_slots')::int AS slots, (SELECT count(*)::int FROM pg_replication_slots) AS used,
           current_setting('max_wal_senders')::int AS senders`);
  const free = room.slots - room.used;
  checks.push({
    name: 'replication slots',
    ok: free > 0 && room.senders > 0,
    detail: free > 0 && room.senders > 0 ? `${free} of ${room.slots} free; max_wal_senders ${room.senders}` : free <= 0 ? explain(Object.assign(new Error('all replication slots are in use'), { code: '53400' }))! : explain(new Error('number of requested standby connections exceeds max_wal_senders'))!,
  });

  // A temporary slot ends with its connection; a permanent one named pgbell_* would keep WAL for ever.
  const { rows } = await run(`
    SELECT slot_name AS name, active, temporary, coalesce(pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)), '0 bytes') AS retained
      FROM pg_replication_slots WHERE slot_name LIKE 'pgbell%' ORDER BY slot_name`);
  const slots = rows as Array<{ name: string; active: boolean; temporary: boolean; retained: string }>;
  const stale = slots.filter((s) => !s.temporary && !s.active);
  checks.push({
    name: 'pgbell slots',
    ok: stale.length === 0,
    detail:
      slots.length === 0
        ? 'none (a running daemon holds one temporary slot while it streams)'
        : `${slots.map((s) => `${s.name} (${s.temporary ? 'temporary' : 'permanent'}, ${s.active ? 'streaming' : 'idle'}, keeps ${s.retained} of WAL)`).join('; ')}${stale.length > 0 ? `: drop the idle permanent ones with SELECT pg_drop_replication_slot('<name>')` : ''}`,
  });

  // The stream's own connection: a pooler or a refused role shows here, not on DATABASE_URL.
  const client = new pg.Client({ connectionString: listenUrl, application_name: 'pgbell-doctor-stream', replication: 'database' } as pg.ClientConfig);
  client.on('error', () => {});
  try {
    await client.connect();
    const r = await client.query<{ systemid: string }>('IDENTIFY_SYSTEM');
    checks.push({ name: 'replication connection', ok: true, detail: `${which} accepts a replication connection (system ${r.rows[0]!.systemid})` });
  } catch (err) {
    checks.push({ name: 'replication connection', ok: false, detail: explain(err as Error) ?? `cannot open a replication connection on ${which}: ${(err as Error).message}` });
  } finally {
    await client.end().catch(() => {});
  }
  return checks;
}
