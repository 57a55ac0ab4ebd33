/**
 * ALTER TABLE on an installed table works as without pgbell (a column renamed, a column's type
 * changed, the mapped title's type too), and in WAL mode what the stream decodes for the new
 * columns is what a resume reads from the table: live and resumed `data` agree.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, run } from './helpers/cli.js';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { emptyDatabase, psql, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let db: string;
const fleet = daemonFleet(() => db);

beforeAll(async () => {
  db = await emptyDatabase('alter');
  await psql(db, `CREATE TABLE public.notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, owner text NOT NULL, title text, n bigint, t text)`);
  const r = await run(['install', '--table', 'public.notes', '--user-column', 'owner', '--title-column', 'title'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: 'wal' }));
  expect(r.code).toBe(0);
});
afterAll(() => fleet.stopAll());

describe('WAL mode after ALTER TABLE', () => {
  it('live and resumed data agree after a column is renamed and another changes type', async () => {
    const d = await fleet.start({ mode: 'wal' });
    const tab = await new Tab(await tokenFor('al')).connect(d.url);
    const before = tab.cursor;
    const live = new Map<string, unknown>();
    tab.client!.ws.on('message', (m) => {
      const msg = JSON.parse(String(m));
      for (const a of msg.type === 'notification' || msg.type === 'update' ? [msg.alert] : msg.type === 'notifications' ? msg.alerts : []) live.set(a.id, a.data);
    });
    const insert = async (sql: string) => String((await query(db, sql))[0]!.id);
    const a = await insert(`INSERT INTO public.notes (owner, title, n, t) VALUES ('al', 'before', 7, '2026-01-02 03:04:05+00') RETURNING id`);
    await until(() => live.has(a), 10_000, 'the first row');
    await psql(db, `ALTER TABLE public.notes RENAME COLUMN n TO m`);
    const b = await insert(`INSERT INTO public.notes (owner, title, m, t) VALUES ('al', 'renamed', 8, 'x') RETURNING id`);
    await until(() => live.has(b), 10_000, 'the row after the rename');
    await psql(db, `DELETE FROM public.notes WHERE t = 'x'; ALTER TABLE public.notes ALTER COLUMN t TYPE timestamptz USING t::timestamptz`);
    // A column pgbell maps (the title) may change type too: pgbell's view names no column.
    await psql(db, `ALTER TABLE public.notes ALTER COLUMN title TYPE varchar(200)`);
    const c = await insert(`INSERT INTO public.notes (owner, title, m, t) VALUES ('al', 'retyped', 9, '2026-05-06 07:08:09+00') RETURNING id`);
    await until(() => live.has(c), 10_000, 'the row after the type change');
    tab.close();
    // What the table says, through a resume from before all of it.
    const resumed = new Tab(await tokenFor('al'));
    resumed.cursor = before;
    await resumed.connect(d.url);
    await until(() => resumed.ids.has(c), 10_000, 'the resume');
    const stored = new Map<string, unknown>();
    for (const m of resumed.client!.messages) for (const x of m.type === 'notification' || m.type === 'update' ? [m.alert] : m.type === 'notifications' ? m.alerts : []) stored.set(x.id, x.data);
    expect(live.get(c)).toEqual(stored.get(c));
    expect(stored.get(c)).toMatchObject({ m: 9, title: 'retyped' });
    resumed.close();
  });
});
