/** Kysely's view of the tables in sql/. Keep in step with the migrations. */
import type { ColumnType, Generated } from 'kysely';

export interface UserTable {
  id: string;
  email: string;
  name: string | null;
  createdAt: ColumnType<Date, Date | string | undefined, never>;
}

export interface AlertTable {
  id: Generated<string>;
  userId: string;
  type: Generated<string>;
  title: string;
  message: Generated<string>;
  link: string | null;
  data: unknown | null;
  read: Generated<boolean>;
  createdAt: ColumnType<Date, Date | string | undefined, never>;
  /** Writer's transaction id (xid8, read as a decimal string); set by its column default. */
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
