/**
 * Moving an alert to another user ("userId" changed) is a delete for the old owner and a new
 * notification for the new one, live and on resume, in notify and poll mode and on an
 * installed table: the alert must not stay in the old owner's list.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, run } from './helpers/cli.js';
import { TestClient } from './helpers/client.js';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { emptyDatabase, freshDatabase, query } from './helpers/pg.js';

let db: string;
let pollDb: string;
const fleet = daemonFleet(() => db);
const pollFleet = daemonFleet(() => pollDb);

beforeAll(async () => {
  db = await freshDatabase(['old', 'new']);
  pollDb = await freshDatabase(['old', 'new']);
  const r = await run(['migrate'], cleanEnv({ DATABASE_URL: pollDb, PGBELL_MODE: 'poll' }));
  expect(r.code).toBe(0);
});
afterAll(async () => {
  await fleet.stopAll();
  await pollFleet.stopAll();
});

async function moveAndCheck(url: string, wsUrl: string) {
  const id = (await query(url, `INSERT INTO "Alert" ("userId", title) VALUES ('old', 'to be moved') RETURNING id`))[0]!.id as string;
  const a = await TestClient.ready(wsUrl, await tokenFor('old'));
  const b = await TestClient.ready(wsUrl, await tokenFor('new'));
  const cursorBefore = a.cursor()!;
  await query(url, `UPDATE "Alert" SET "userId" = 'new' WHERE id = $1`, [id]);
  expect(await a.next((m) => m.type === 'delete')).toMatchObject({ type: 'delete', id });
  expect((await b.next((m) => m.type === 'notification')).alert).toMatchObject({ id, userId: 'new', title: 'to be moved' });
  expect(b.of('update')).toEqual([]);
  a.close();
  b.close();
  // The old owner resuming from before the move gets the delete too.
  const again = await TestClient.ready(wsUrl, await tokenFor('old'), cursorBefore);
  expect(again.of('delete').map((m) => m.id)).toEqual([id]);
  expect(again.alerts()).toEqual([]);
  again.close();
}

describe('a change of owner', () => {
  it('notify mode: delete for the old owner, notification for the new one; also on resume', async () => {
    const d = await fleet.start();
    await moveAndCheck(db, d.url);
  });

  it('poll mode: the same', async () => {
    const d = await pollFleet.start({ mode: 'poll', pollMs: 50 });
    await moveAndCheck(pollDb, d.url);
  });

  it('an installed table: the same', async () => {
    const url = await emptyDatabase('owner');
    await query(url, `CREATE TABLE notes (id bigserial PRIMARY KEY, owner text NOT NULL, title text NOT NULL)`);
    const install = () => run(['install', '--table', 'notes', '--user-column', 'owner', '--title-column', 'title'], cleanEnv({ DATABASE_URL: url }));
    const r = await install();
    expect(r.code, r.stderr).toBe(0);
    // As an older pgbell installed it (no owner-change logic): running install again updates it.
    await query(url, `CREATE OR REPLACE FUNCTION pgbell.tg_alert__updated() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN UPDATE pgbell."AlertChange" c SET "changedTxid" = pg_current_xact_id() FROM new_rows n WHERE c.key = n.id; RETURN NULL; END $$`);
    expect((await install()).stdout).toMatch(/already installed on .*notes; its trigger functions were brought up to date/);
    expect((await install()).stdout).toMatch(/already installed on .*notes; nothing to do/);
    const fleet2 = daemonFleet(() => url);
    const d = await fleet2.start();
    try {
      const id = (await query(url, `INSERT INTO notes (owner, title) VALUES ('old', 'mine') RETURNING id::text`))[0]!.id as string;
      const a = await TestClient.ready(d.url, await tokenFor('old'));
      const b = await TestClient.ready(d.url, await tokenFor('new'));
      await query(url, `UPDATE notes SET owner = 'new' WHERE id = $1`, [id]);
      expect(await a.next((m) => m.type === 'delete')).toMatchObject({ id });
      expect((await b.next((m) => m.type === 'notification')).alert).toMatchObject({ id, userId: 'new' });
      a.close();
      b.close();
    } finally {
      await fleet2.stopAll();
    }
  });
});
