/**
 * The vocabulary of pgbell's bookkeeping, shared by every file that builds or reads it: the
 * schema it lives in, which columns of the served table mean what, and how a stored table name
 * becomes SQL. It sits below the rest (the statements, the triggers, the publication, the reads
 * of what is installed) so that each of those imports it and none imports another for it.
 */
import pg from 'pg';

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

const q = pg.escapeIdentifier;

/** `schema.table` as stored → quoted SQL. */
export function tableSql(name: string): string {
  const [schema, table] = name.split('.') as [string, string];
  return `${q(schema)}.${q(table)}`;
}

/** Runs one SQL statement and returns its rows: a pg client's query, or any function of that shape. */
export type Run = (text: string) => Promise<{ rows: unknown[] }>;
