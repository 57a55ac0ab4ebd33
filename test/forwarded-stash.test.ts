/**
 * A worker of `pgbell start --workers N` gets the primary's live reads over IPC, some
 * time after the primary made them. A transaction the primary read before a later one changed
 * the same alert can reach a worker after one of its sockets began to sync: the sync's read sees
 * the alert's newer state (stamped with the later transaction), while the stash holds the older
 * transaction with the older state. When an older transaction is still open (so the earlier
 * transaction is above the read's xmin), the cursor after the sync does not hold the earlier
 * transaction, and sendStash offers it: the socket gets the alert a second time on the same
 * connection, in its stale state, after the current one (and the later transaction is then
 * skipped, so the stale state stays).
 *
 * This drives Delivery exactly as a worker's ForwardedSource does (enqueue with carried changes
 * and their counts, read earlier by "the primary"), with a real Postgres for the sync read.
 */
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { changesByTxids, currentEpoch, unreadFor } from '../src/db/changes.js';
import { createDb } from '../src/db/connect.js';
import { Delivery } from '../src/delivery/delivery.js';
import { Hub, Subscriber } from '../src/delivery/hub.js';
import { createLogger } from '../src/log.js';
import { freshDatabase, query } from './helpers/pg.js';

class FakeSocket {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  readonly got: any[] = [];
  send(data: string): void {
    this.got.push(JSON.parse(data));
  }
  close(): void {
    this.readyState = 3;
  }
  terminate(): void {
    this.readyState = 3;
  }
  ping(): void {}
}

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

it('a forwarded transaction the sync read saw in a newer state is not sent again, stale, on the same connection', async () => {
  const url = await freshDatabase(['fw1']);
  const db = createDb(url);
  cleanups.push(() => db.destroy());
  // A writer's transaction that stays open: every snapshot's xmin stays at its id.
  const old = new pg.Client({ connectionString: url });
  await old.connect();
  cleanups.push(() => old.end());
  await old.query('BEGIN');
  await old.query('SELECT pg_current_xact_id()');

  const epoch = await currentEpoch(db);
  const hub = new Hub();
  const delivery = new Delivery({ db, hub, log: createLogger('silent'), epoch, maxReplay: 10_000 });
  cleanups.push(() => delivery.abandon());

  // A tab syncs once and keeps its cursor (from before the alert exists).
  const first = new FakeSocket();
  const s0 = new Subscriber(first, 'fw1', null, null);
  hub.add(s0);
  await delivery.subscribe(s0);
  const cursor = first.got.find((m) => m.type === 'synced').cursor as string;
  hub.remove(s0);

  // T inserts the alert; the primary reads T before T' changes it.
  const { t } = (await query<{ t: string }>(url, `INSERT INTO "Alert" (id, "userId", type, title) VALUES ('x1', 'fw1', 'info', 'first') RETURNING pg_current_xact_id()::text AS t`))[0]!;
  const readT = await changesByTxids(db, [t], 'all');
  const countsT = await unreadFor(db, ['fw1']);
  // T' changes it; the primary reads T'.
  const { t: t2 } = (await query<{ t: string }>(url, `UPDATE "Alert" SET title = 'second' WHERE id = 'x1' RETURNING pg_current_xact_id()::text AS t`))[0]!;
  const readT2 = await changesByTxids(db, [t2], 'all');
  const countsT2 = await unreadFor(db, ['fw1']);
  expect(readT.changes).toHaveLength(1);
  expect(readT2.changes).toHaveLength(1);

  // The tab reconnects with its cursor; while its sync read runs, the forwarded steps for T and
  // T' arrive (the IPC lag of a worker).
  const ws = new FakeSocket();
  const s1 = new Subscriber(ws, 'fw1', null, cursor);
  hub.add(s1);
  const synced = delivery.subscribe(s1);
  delivery.enqueue(t, null, readT.changes, { unread: countsT.unread, muted: countsT.muted });
  delivery.enqueue(t2, null, readT2.changes, { unread: countsT2.unread, muted: countsT2.muted });
  await synced;
  await delivery.drain();

  const alerts = ws.got.flatMap((m) => (m.type === 'notification' || m.type === 'update' ? [{ type: m.type, title: m.alert.title }] : m.type === 'notifications' ? m.alerts.map((a: any) => ({ type: m.type, title: a.title })) : []));
  // The alert once on this connection, in its current state.
  expect(alerts).toEqual([{ type: 'notification', title: 'second' }]);
  await old.query('ROLLBACK');
});
