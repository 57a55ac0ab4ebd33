/**
 * What a streaming transaction holds, and how the stream's rows become pgbell's: the carry
 * limit, which relation a row belongs to, which column types the stream renders exactly as the
 * view pgbell."Alert" would, and a row rendered as to_jsonb gives it. Separate from wal.ts (the
 * stream's lifecycle): this is the decoding, and none of it depends on the connection.
 */
import type { Pgoutput } from 'pg-logical-replication';
import { SCHEMA, type Mapping } from '../db/bookkeeping.js';
import type { AlertChange } from '../db/changes.js';
import type { Logger } from '../log.js';

/**
 * What one streaming transaction may hold of rows before it is read by id instead. Each row
 * streams twice (the table's and its bookkeeping), and all of a transaction's arrive before its
 * commit: a 100,000-row backfill was held whole.
 */
export const CARRY_MAX_BYTES = 8 << 20;

/** A row as pg-logical-replication decodes it: column name → value parsed like a query's. */
export type Tuple = Record<string, unknown>;

/** One transaction as it streams in. */
export interface Pending {
  /** AlertChange rows by key, the last version in the transaction; null: deleted in it. */
  changes: Map<string, Tuple | null>;
  /** Rows of the table by id (text), the last version, with the column types they were decoded with. */
  rows: Map<string, { row: Tuple; types: Map<string, number> }>;
  tombstones: Tuple[];
  revocations: Tuple[];
  /** Something the stream cannot render exactly: read this transaction instead. */
  readInstead: boolean;
  /** What `changes`, `rows` and `tombstones` hold, about. */
  bytes: number;
  /**
   * Past carryMaxBytes: the rows are dropped and read by id; only the transaction ids of its
   * bookkeeping are kept, here (null until then).
   */
  txids: Set<string> | null;
}

/** What is known of each relation message's columns: their types, and whether the stream renders them exactly. */
export class Relations {
  /** Columns of the table whose values render as to_jsonb would (for a table without a data column). */
  /**
   * By relation message: the stream sends a new one after the table's columns change (ALTER
   * TABLE), so nothing decoded for the old columns is used for the new.
   */
  #plain = new WeakMap<Pgoutput.MessageRelation, boolean>();
  #columnTypes = new WeakMap<Pgoutput.MessageRelation, Map<string, number>>();

  types(rel: Pgoutput.MessageRelation): Map<string, number> {
    let types = this.#columnTypes.get(rel);
    if (!types) this.#columnTypes.set(rel, (types = new Map(rel.columns.map((c) => [c.name, c.typeOid]))));
    return types;
  }

  /** Whether the stream renders the table's rows exactly as the view pgbell."Alert" would. */
  renderable(rel: Pgoutput.MessageRelation, m: Mapping): boolean {
    const known = this.#plain.get(rel);
    if (known !== undefined) return known;
    const byName = new Map(rel.columns.map((c) => [c.name, c.typeOid]));
    const textual = (col: string) => !col || TEXT_TYPES.has(byName.get(col) ?? -1);
    let ok = textual(m.titleColumn) && textual(m.messageColumn) && textual(m.linkColumn) && byName.has(m.idColumn);
    if (m.dataColumn) ok &&= JSON_TYPES.has(byName.get(m.dataColumn) ?? -1);
    else ok &&= rel.columns.every((c) => JSONB_PLAIN.has(c.typeOid));
    this.#plain.set(rel, ok);
    return ok;
  }
}

/**
 * The transaction outgrew carryMaxBytes: its rows so far are dropped, and from now on only the
 * transaction ids of its bookkeeping are kept. At its commit it is read by id (as one the
 * stream cannot render), by the users live then.
 */
export function stopCarrying(tx: Pending, rel: Pgoutput.MessageRelation, tuple: Tuple, log: Logger): void {
  const txids = new Set<string>();
  for (const c of tx.changes.values()) if (c) txids.add(String(c.changedTxid));
  for (const t of tx.tombstones) txids.add(String(t.txid));
  tx.txids = txids;
  tx.readInstead = true;
  tx.changes.clear();
  tx.rows.clear();
  tx.tombstones = [];
  log.debug({ bytes: tx.bytes }, 'a streaming transaction outgrew what is carried: it will be read by transaction id');
  rowUncarried(tx, rel, tuple);
}

/** A row of a transaction no longer carried: its transaction id, or a revocation. */
export function rowUncarried(tx: Pending, rel: Pgoutput.MessageRelation, tuple: Tuple): void {
  if (isRel(rel, SCHEMA, 'AlertChange') || isRel(rel, SCHEMA, 'preference')) tx.txids!.add(String(tuple.changedTxid));
  else if (isRel(rel, SCHEMA, 'AlertTombstone')) tx.txids!.add(String(tuple.txid));
  else if (isRel(rel, SCHEMA, 'pgbell_revocation')) tx.revocations.push(tuple);
}

/** Text-like types: their value is the column's ::text. */
const TEXT_TYPES = new Set([25, 1043, 1042, 19]);
/**
 * jsonb only: a json column may hold what jsonb refuses (\u0000), which the read side renders
 * as no data (pgbell.row_data); it is read by id so that live and resumed data agree.
 */
const JSON_TYPES = new Set([3802]);
/** Types whose decoded value is what to_jsonb gives: text-like, uuid, booleans, numbers, jsonb. */
const JSONB_PLAIN = new Set([...TEXT_TYPES, ...JSON_TYPES, 2950, 16, 21, 23, 20, 700, 701, 1700]);

/** The row as to_jsonb(row) gives it, for the types in JSONB_PLAIN (keys in jsonb's order). */
export function rowJson(row: Tuple, types: Map<string, number>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const keys = Object.keys(row).sort((a, b) => Buffer.byteLength(a) - Buffer.byteLength(b) || Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const k of keys) {
    const v = row[k];
    // int8 and numeric decode as strings, floats as numbers: to_jsonb gives finite values as
    // numbers and NaN or infinities as strings.
    if (typeof v === 'number') out[k] = Number.isFinite(v) ? v : String(v);
    else if (typeof v === 'string' && NUMERIC_AS_STRING.has(types.get(k) ?? -1)) out[k] = Number.isFinite(Number(v)) ? Number(v) : v;
    else out[k] = v;
  }
  return out;
}

const NUMERIC_AS_STRING = new Set([20, 1700]);

export function isRel(rel: Pgoutput.MessageRelation, schema: string, name: string): boolean {
  return rel.schema === schema && rel.name === name;
}

export function keyOf(t: Tuple | null | undefined): string {
  return String(t?.key);
}

export function byBigInt(a: string, b: string): number {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * The alert a carried transaction holds: its bookkeeping row `c` (AlertChange) and the table's
 * row, in the shape the read side gives (seen is true once read, as in the view).
 */
export function carriedAlert(tid: bigint, c: Tuple, row: Tuple, types: Map<string, number>, m: Mapping): AlertChange {
  return {
    kind: 'alert',
    txid: tid,
    insertTxid: BigInt(String(c.txid)),
    seq: BigInt(String(c.seq)),
    alert: {
      id: String(c.id),
      userId: String(c.userId),
      type: String(c.type),
      title: m.titleColumn ? String(row[m.titleColumn] ?? '') : '',
      message: m.messageColumn ? String(row[m.messageColumn] ?? '') : '',
      link: m.linkColumn ? ((row[m.linkColumn] as string | null) ?? null) : null,
      data: m.dataColumn ? (row[m.dataColumn] ?? null) : rowJson(row, types),
      read: c.read as boolean,
      seen: c.seen === true || c.read === true,
      archived: c.archived === true,
      createdAt: (c.createdAt as Date).toISOString(),
    },
  };
}
