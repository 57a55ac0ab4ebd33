/**
 * The last operation on a row within a transaction wins, in every mode: a delete and a
 * re-insert of one id in one transaction is the row that exists (its delete, if sent, comes
 * first), live and on resume; an insert then a delete is a delete; a row moved to another user and back is the
 * first user's; and on `?after=`, where a polling client applies every alert, then every delete.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, run } from './helpers/cli.js';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { MODES } from './helpers/modes.js';
import { Tab, until } from './helpers/tab.js';

describe.each(Object.keys(MODES) as Array<keyof typeof MODES>)('%s mode', (mode) => {
  let db: string;
  const fleet = daemonFleet(() => db);
  beforeAll(async () => {
    db = await freshDatabase(['lw', 'lx']);
    expect((await run(['migrate'], cleanEnv({ DATABASE_URL: db, PGBELL_MODE: mode }))).code).toBe(0);
  });
  afterAll(() => fleet.stopAll());

  it('delete and re-insert of one id in one transaction: the alert exists, live and on resume', async () => {
    const d = await fleet.start(MODES[mode]);
    const tab = await new Tab(await tokenFor('lw')).connect(d.url);
    const [id, mover] = (await query<{ id: string }>(db, `INSERT INTO "Alert" ("userId", title) VALUES ('lw', 'first'), ('lw', 'mover') RETURNING id`)).map((r) => r.id);
    await until(() => tab.ids.has(id!) && tab.ids.has(mover!), 10_000, 'the first alerts');
    const before = tab.cursor;
    const messages: any[] = [];
    tab.client!.ws.on('message', (m) => messages.push(JSON.parse(String(m))));
    await query(db, `BEGIN; DELETE FROM "Alert" WHERE id = '${id}'; INSERT INTO "Alert" (id, "userId", title) VALUES ('${id}', 'lw', 'second'); COMMIT;`);
    // An insert and a delete of another id in one transaction: a delete (or nothing).
    const gone = 'gone-' + id;
    await query(db, `BEGIN; INSERT INTO "Alert" (id, "userId", title) VALUES ('${gone}', 'lw', 'brief'); DELETE FROM "Alert" WHERE id = '${gone}'; COMMIT;`);
    // Moved to another user and back in one transaction: still lw's.
    await query(db, `BEGIN; UPDATE "Alert" SET "userId" = 'lx' WHERE id = '${mover}'; UPDATE "Alert" SET "userId" = 'lw', title = 'third' WHERE id = '${mover}'; COMMIT;`);
    const marker = (await query<{ id: string }>(db, `INSERT INTO "Alert" ("userId", title) VALUES ('lw', 'marker') RETURNING id`))[0]!.id;
    await until(() => tab.ids.has(marker!), 10_000, 'the marker');
    const about = (x: string) => messages.filter((m) => m.id === x || m.alert?.id === x || m.alerts?.some((a: any) => a.id === x));
    // The last message about each is the alert as it is (a delete, if any, came first).
    expect(about(id!).at(-1).alert?.title).toBe('second');
    expect(about(mover!).at(-1).alert?.title).toBe('third');
    expect(about(gone).some((m) => m.type === 'notification' || m.type === 'update')).toBe(false);
    tab.close();
    // On resume from before all of it: the same.
    const resumed = new Tab(await tokenFor('lw'));
    resumed.cursor = before;
    await resumed.connect(d.url);
    await until(() => resumed.ids.has(marker!), 10_000, 'the marker on resume');
    // Applied in order, as a client does: the alert is there at the end, the brief one is not.
    const present = new Map<string, boolean>();
    for (const m of resumed.client!.messages) {
      if (m.type === 'delete') present.set(m.id, false);
      for (const a of m.type === 'notification' || m.type === 'update' ? [m.alert] : m.type === 'notifications' ? m.alerts : []) present.set(a.id, true);
    }
    expect(present.get(id!)).toBe(true);
    expect(present.get(mover!)).toBe(true);
    expect(present.get(gone) ?? false).toBe(false);
    resumed.close();
    // And on ?after= (a polling client applies every alert, then every delete).
    const polled = (await (await fetch(`${d.url.replace('ws:', 'http:')}alerts?after=${encodeURIComponent(before!)}`, { headers: { authorization: `Bearer ${await tokenFor('lw')}` } })).json()) as { alerts: any[]; deleted: string[] };
    const after = new Map<string, string>(polled.alerts.map((a) => [a.id, a.title]));
    for (const x of polled.deleted) after.delete(x);
    expect([after.get(id!), after.get(mover!), after.get(gone)]).toEqual(['second', 'third', undefined]);
  });

});
