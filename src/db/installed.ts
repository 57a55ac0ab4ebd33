/**
 * What `pgbell migrate` or `pgbell install` left in the database, read without changing it: the
 * install row (which table, its column mapping, the channel, the version, which command made it)
 * and the mode that implies. Doctor, the CLI, WAL mode and the installers all start here;
 * the `pgbell install` command itself is install.ts.
 */
import pg from 'pg';
import { SCHEMA, type Mapping, type Run } from './mapping.js';
import { PUBLICATION } from './publication.js';

const lit = pg.escapeLiteral;

/** What created the bookkeeping: `pgbell migrate` (pgbell's own tables) or `pgbell install`. */
export type Kind = 'migrate' | 'install';

/** Version 1: the bookkeeping lived in columns of the table. 2: in schema pgbell only. 3: seen and archived. 4: muted types, state functions with a limit. */
export const BOOKKEEPING_VERSION = 4;

export interface Source {
  kind: Kind;
  mapping: Mapping;
  channel: string;
  version: number;
}

/** What schema pgbell says about the table it serves, or null where there is none. */
export async function readSource(run: Run): Promise<Source | null> {
  const { rows } = await run(`SELECT to_regclass('${SCHEMA}.install') IS NOT NULL AS present`);
  if (!(rows[0] as { present: boolean }).present) return null;
  const hasKind = (await run(`SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = '${SCHEMA}.install'::regclass AND attname = 'kind' AND NOT attisdropped`)).rows[0] as { n: number };
  const res = await run(`SELECT options, channel, version, ${hasKind.n > 0 ? 'kind' : `'install'`} AS kind FROM ${SCHEMA}.install`);
  const row = res.rows[0] as { options: Mapping; channel: string; version: number; kind: Kind } | undefined;
  if (!row) return null;
  // Installs of version 1 stored no data column: the whole row.
  return { kind: row.kind, mapping: { ...row.options, dataColumn: row.options.dataColumn ?? '' }, channel: row.channel, version: row.version };
}

/**
 * The mode the database is set up for, as migrate or install left it: a channel means notify
 * mode; no channel, WAL mode if the publication is there, else poll. Null where pgbell has no
 * bookkeeping yet.
 */
export async function databaseMode(run: Run): Promise<{ mode: 'notify' | 'poll' | 'wal'; channel: string } | null> {
  const source = await readSource(run);
  if (source === null) return null;
  if (source.channel !== '') return { mode: 'notify', channel: source.channel };
  const { rows } = await run(`SELECT 1 FROM pg_publication WHERE pubname = ${lit(PUBLICATION)}`);
  return { mode: rows.length > 0 ? 'wal' : 'poll', channel: '' };
}
