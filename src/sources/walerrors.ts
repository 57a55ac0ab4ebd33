/**
 * What a refusal of the replication stream means (wal_level, REPLICATION, slots, WAL senders,
 * the publication, a pooler, a replica), as one line saying what to change. Separate from the
 * stream (wal.ts) because `pgbell doctor` (walcheck.ts) says the same lines without streaming.
 */

/**
 * What the server's refusal means, as one line naming the setting and the fix; null for a
 * failure that retrying may cure (a restart, a dropped connection).
 */
export function explain(err: Error): string | null {
  const msg = err.message;
  const code = (err as { code?: string }).code;
  if (/wal_level/.test(msg)) {
    return 'WAL mode needs wal_level = logical: run ALTER SYSTEM SET wal_level = logical and restart the server (on Amazon RDS/Aurora: rds.logical_replication = 1 in the parameter group; on Cloud SQL: the cloudsql.logical_decoding flag); or use PGBELL_MODE=notify';
  }
  if (/must be superuser or replication role|permission denied to start WAL sender|must have the REPLICATION attribute|REPLICATION attribute/i.test(msg) || (code === '42501' && /replication|WAL sender/i.test(msg))) {
    return 'WAL mode needs a role with REPLICATION: ALTER ROLE <role> REPLICATION (on Amazon RDS/Aurora: GRANT rds_replication TO <role>; on Cloud SQL: ALTER USER <role> WITH REPLICATION; on Azure: ALTER ROLE <role> WITH REPLICATION); or use PGBELL_MODE=notify';
  }
  if (/no pg_hba.conf entry for replication connection/.test(msg)) return `the server refuses replication connections from here: add a "host replication" line to pg_hba.conf for this role (${msg})`;
  if (code === '53400' || /all replication slots are in use/.test(msg)) return 'no free replication slot: raise max_replication_slots (needs a restart) or drop unused slots (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active)';
  if (code === '53300' && /wal.?sender|standby|replication/i.test(msg)) return 'no free WAL sender: raise max_wal_senders (needs a restart)';
  if (/number of requested standby connections exceeds max_wal_senders/.test(msg)) return 'no free WAL sender: raise max_wal_senders (needs a restart)';
  if (/publication "pgbell" does not exist/.test(msg)) return 'publication pgbell is missing: run `pgbell migrate` (or `pgbell install` again) with PGBELL_MODE=wal';
  if (/publication "pgbell" was altered/.test(msg)) return `${msg}: run \`pgbell migrate\` (or \`pgbell install\` again) with PGBELL_MODE=wal to make it right`;
  if (/while in recovery|during recovery|cannot be executed during recovery/.test(msg)) return 'DATABASE_URL (or LISTEN_DATABASE_URL) points at a replica: logical replication of pgbell\'s publication needs the primary';
  if (/unsupported startup parameter: replication|unsupported pkt type|replication.*not supported/i.test(msg)) {
    return 'the replication connection goes through a pooler (e.g. PgBouncer), which cannot carry logical replication: point LISTEN_DATABASE_URL at the primary directly';
  }
  return null;
}
