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
}

export interface Database {
  User: UserTable;
  Alert: AlertTable;
}
