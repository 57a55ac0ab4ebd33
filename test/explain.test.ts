/**
 * The reads on the delivery path stay indexed with the bookkeeping in schema pgbell: their
 * generic plans (how the daemon runs them) scan no table whole, on pgbell's own "Alert" and on
 * an installed table with no index but its primary key, also beside many deletes of one user.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { DELIVERY_READS } from '../src/db/changes.js';
import { cleanEnv, run } from './helpers/cli.js';
import { emptyDatabase, freshDatabase, psql } from './helpers/pg.js';

async function plans(url: string): Promise<Record<string, string>> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`SELECT set_config('search_path', 'pgbell, ' || current_setting('search_path'), false), set_config('plan_cache_mode', 'force_generic_plan', false)`);
    await c.query('ANALYZE');
    const out: Record<string, string> = {};
    const explain = async (name: string, sql: string, types: string, args: string) => {
      await c.query(`PREPARE ${name}(${types}) AS ${sql}`);
      out[name] = (await c.query(`EXPLAIN EXECUTE ${name}(${args})`)).rows.map((r) => r['QUERY PLAN']).join('\n');
    };
    await explain('by_txids', DELIVERY_READS.byTxids, 'xid8[], text[]', `ARRAY['5']::xid8[], ARRAY['u1']`);
    await explain('since', DELIVERY_READS.since, 'text[], xid8[], int', `ARRAY['u1'], ARRAY['5']::xid8[], 100`);
    await explain('since_all', DELIVERY_READS.sinceAll, 'xid8, int', `'5'::xid8, 100`);
    return out;
  } finally {
    await c.end();
  }
}

/** What the bookkeeping looks like in use: many transactions, not one (an install's backfill). */
const WRITERS = (insert: string) => `DO $$ BEGIN FOR i IN 1..3000 LOOP ${insert} VALUES ('u' || (i % 200 + 1), 'w' || i); COMMIT; END LOOP; END $$`;

describe('delivery reads', () => {
  it.each([
    ['pgbell migrate', 'Alert'],
    ['pgbell install', 'notes'],
  ])('%s: no sequential scan of the table or its bookkeeping', async (how, table) => {
    let url: string;
    if (how === 'pgbell migrate') {
      url = await freshDatabase();
      await psql(url, `INSERT INTO "User" (id, email) SELECT 'u' || i, 'u' || i || '@x' FROM generate_series(1, 200) i;
        INSERT INTO "Alert" ("userId", title) SELECT 'u' || (i % 200 + 1), 't' || i FROM generate_series(1, 20000) i;`);
      await psql(url, WRITERS('INSERT INTO "Alert" ("userId", title)'));
      // Deletes, nearly all of one user: whether an alert was deleted before is still one probe.
      await psql(url, `INSERT INTO "Alert" (id, "userId", title) SELECT 'gone' || i, 'u1', 'g' FROM generate_series(1, 20000) i; DELETE FROM "Alert" WHERE id LIKE 'gone%';`);
    } else {
      url = await emptyDatabase('explain');
      await psql(url, `CREATE TABLE notes (id bigserial PRIMARY KEY, owner text NOT NULL, title text NOT NULL, seen boolean NOT NULL DEFAULT false);
        INSERT INTO notes (owner, title) SELECT 'u' || (i % 200 + 1), 't' || i FROM generate_series(1, 20000) i;`);
      const r = await run(['install', '--table', 'notes', '--user-column', 'owner', '--title-column', 'title', '--read-column', 'seen'], cleanEnv({ DATABASE_URL: url }));
      expect(r.code, r.stderr).toBe(0);
      // Right after the install: every row has the install's transaction id.
    }
    for (const [name, plan] of Object.entries(await plans(url))) {
      expect(plan, name).not.toMatch(new RegExp(`Seq Scan on (${table}|"?AlertChange"?)\\b`));
      // The live read and a resume: with many deletes, still a probe per row (the relay's
      // catch-up, rare, may hash them).
      if (how === 'pgbell migrate' && name !== 'since_all') expect(plan, name).not.toMatch(/Seq Scan on "?AlertTombstone"?/);
      expect(plan, name).toMatch(/Index/);
    }
    // The counts (unread, unseen, by type; archived left out) come from the one partial index.
    const all = await plans(url);
    for (const name of ['by_txids', 'since']) expect(all[name], name).toMatch(/AlertChange_userId_counts_idx/);
  });
});
