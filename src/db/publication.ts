/**
 * WAL mode's publication of the table and the bookkeeping: creating it, dropping it, and saying
 * what is wrong with it. Apart from the rest of the bookkeeping because only WAL mode needs it,
 * and doctor and the WAL source check it without changing anything.
 */
import pg from 'pg';
import { SCHEMA, tableSql, type Mapping, type Run } from './mapping.js';

const q = pg.escapeIdentifier;
const lit = pg.escapeLiteral;

/**
 * WAL mode's publication: the table and pgbell's bookkeeping, every kind of change. The daemon
 * streams it over a replication connection (src/sources/wal.ts); nothing else uses it.
 */
export const PUBLICATION = 'pgbell';

/** The tables the publication must hold, as `schema.table` (unquoted, like Mapping.table). */
export function publishedTables(m: Mapping): string[] {
  return [m.table, `${SCHEMA}.AlertChange`, `${SCHEMA}.AlertTombstone`, `${SCHEMA}.pgbell_revocation`, `${SCHEMA}.preference`];
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
