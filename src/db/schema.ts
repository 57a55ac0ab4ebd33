/**
 * Kysely's view of what pgbell reads, with schema pgbell first on the search_path: "Alert" is
 * the view of src/db/bookkeeping.ts (the table joined to its bookkeeping), the others its tables.
 */
import type { ColumnType, Generated } from 'kysely';

export interface UserTable {
  id: string;
  email: string;
  name: string | null;
  createdAt: ColumnType<Date, Date | string | undefined, never>;
}

export interface AlertTable {
  /** The table's own id, in its own type. */
  key: ColumnType<unknown, never, never>;
  id: Generated<string>;
  userId: string;
  type: Generated<string>;
  title: string;
  message: Generated<string>;
  link: string | null;
  data: unknown | null;
  read: Generated<boolean>;
  createdAt: ColumnType<Date, Date | string | undefined, never>;
  /** The transaction that inserted it for its owner (xid8, read as a decimal string). */
  txid: ColumnType<string, never, never>;
  /** Insertion order within a transaction (bigint, read as a string). */
  seq: ColumnType<string, never, never>;
  /** The transaction that last inserted or updated the row (kept by a trigger). */
  changedTxid: ColumnType<string, never, never>;
}

/** Deleted alerts, kept so a resume can tell the client (pruned after a retention period). */
export interface AlertTombstoneTable {
  id: string;
  userId: string;
  txid: ColumnType<string, never, never>;
  deletedAt: ColumnType<Date, never, never>;
}

export interface PgbellStateTable {
  one: ColumnType<boolean, never, never>;
  databaseId: ColumnType<string, never, never>;
  prunedTxid: ColumnType<string, never, never>;
}

export interface Database {
  User: UserTable;
  Alert: AlertTable;
  AlertTombstone: AlertTombstoneTable;
  pgbell_state: PgbellStateTable;
}
