/**
 * Who gets a transaction, and how it is written: fanOut() hands one transaction to each live
 * subscriber of its users (stashing it on those whose sync read is running), offer() queues it
 * in a socket's outbox unless its cursor has it, sendAll() writes the outbox in order,
 * coalescing runs of new alerts for sockets that asked for batches. Separate from Delivery so
 * the per-socket rules (what a cursor has, which cursor each message carries) read in one place,
 * apart from the ordering of steps.
 */
import type { Change, UnreadByType } from '../db/changes.js';
import type { Subscriber } from './hub.js';
import type { UserChanges } from './stash.js';
import type { Metrics } from '../metrics.js';
import { body, countsFor, frame, mayHold, shown, userChanges, userOf } from './messages.js';
import type { DeliveryOptions } from './options.js';

/** A message bound for one socket: its body, the alert's JSON if it is a new alert, its counts' fields and cursor. */
export interface Outgoing {
  body: string;
  alert: string | null;
  counts: string;
  cursor: string;
}
export type Outbox = Map<Subscriber, Outgoing[]>;

/**
 * Sends one socket its messages from one live batch, in order. A socket that asked for batches
 * gets each run of new alerts as one `notifications` frame carrying the run's last unread count
 * and cursor: a frame arrives whole or not at all, so that cursor is as safe as the last
 * message's would be.
 */
export function sendAll(sub: Subscriber, out: Outgoing[]): void {
  for (let i = 0; i < out.length; ) {
    const first = out[i]!;
    let j = i + 1;
    if (sub.batch && first.alert !== null) while (j < out.length && out[j]!.alert !== null) j++;
    if (j - i === 1) {
      sub.send(frame(first.body, first.counts, first.cursor));
    } else {
      const last = out[j - 1]!;
      const alerts: string[] = [];
      for (let k = i; k < j; k++) alerts.push(out[k]!.alert!);
      sub.send(`{"type":"notifications","alerts":[${alerts.join(',')}],${last.counts},"cursor":"${last.cursor}"}`);
    }
    i = j;
  }
}

/**
 * Queues one transaction's changes in `outbox` for each live subscriber of their users that
 * lacks it, and stashes them on each subscriber whose sync read is running.
 */
export function fanOut(o: Pick<DeliveryOptions, 'hub' | 'log' | 'metrics'>, epoch: string, tx: bigint, group: Change[], unread: Map<string, UnreadByType>, horizon: bigint, outbox: Outbox): void {
  const { hub, log } = o;
  const byUser = new Map<string, Change[]>();
  for (const c of group) {
    const uid = userOf(c);
    let list = byUser.get(uid);
    if (!list) byUser.set(uid, (list = []));
    list.push(c);
  }
  // One line per alert and user is for a person watching (dev's default level is debug); at
  // info it cost half of delivery's latency at 1,000 alerts/s. The info summary counts them.
  const logEach = log.isLevelEnabled('debug');
  // Counted here and added to the metrics once: a labelled counter costs a lookup per call.
  const counts = { notification: 0, update: 0, delete: 0 };
  let alerts = 0;
  for (const [uid, list] of byUser) {
    // Reads for everyone (many users connected, or Redis mode's relay) include users with no socket here.
    if (hub.countFor(uid) === 0) continue;
    const changes = userChanges(tx, list, unread.get(uid));
    const { kinds } = changes;
    let sent = 0;
    for (const sub of hub.receiving(uid)) {
      if (sub.stash) sub.stash.push({ tx, horizon, changes });
      else if (offer(sub, epoch, tx, changes, horizon, outbox, counts)) sent++;
    }
    if (sent > 0) for (let k = 0; k < list.length; k++) if (kinds[k] === 'notification') alerts++;
    if (logEach) {
      for (const c of list) {
        if (c.kind === 'alert' && c.insertTxid === tx) log.debug({ userId: uid, alertId: c.alert.id, connections: sent }, `Broadcasted notification to user ${uid} (${sent} connections)`);
      }
    }
  }
  countDelivered(o.metrics, counts, alerts);
}

/** Queues one transaction's changes for one live subscriber unless it has them; true if any message was queued. */
export function offer(sub: Subscriber, epoch: string, tx: bigint, ch: UserChanges, horizon: bigint, outbox: Outbox, counts: Record<'notification' | 'update' | 'delete', number>): boolean {
  const cursor = sub.cursor!;
  // A cursor of an old epoch may "have" an id the new one handed to another transaction.
  if (sub.epoch !== epoch || cursor.has(tx)) return false;
  const { list, kinds, alertJson, bodies } = ch;
  // A change of preferences applies to the alerts after it (byRow puts it first in its transaction).
  let muted = sub.muted;
  // Each pick is an index into the transaction's changes, or the body of a delete standing in
  // for an update the socket no longer wants (see shown()).
  const picked: Array<number | string> =
    sub.types === null && muted.size === 0 && !kinds.includes('preferences')
      ? ch.all
      : ch.all.flatMap((k): Array<number | string> => {
          const c = list[k]!;
          if (c.kind === 'preferences') muted = new Set(c.muted);
          const s = shown(sub, c, mayHold(c, kinds[k] === 'update'), muted);
          return s === null ? [] : s === c ? [k] : [body(s, false)];
        });
  sub.muted = muted;
  cursor.advance(horizon);
  // Until its last message arrives, a client has not seen the whole transaction. (Only
  // encoded when there is more than one message: most transactions write one row.)
  const before = picked.length > 1 ? cursor.encode(epoch) : '';
  cursor.add(tx);
  if (picked.length === 0) return false;
  const after = cursor.encode(epoch);
  const fields = countsFor(ch, sub.types);
  let out = outbox.get(sub);
  if (!out) outbox.set(sub, (out = []));
  picked.forEach((k, j) => {
    const cursorNow = j === picked.length - 1 ? after : before;
    if (typeof k === 'string') out.push({ body: k, alert: null, counts: fields, cursor: cursorNow });
    else out.push({ body: bodies[k]!, alert: kinds[k] === 'notification' ? alertJson[k]! : null, counts: fields, cursor: cursorNow });
  });
  for (const k of picked) {
    const kind = typeof k === 'string' ? 'delete' : kinds[k]!;
    if (kind !== 'preferences') counts[kind]++;
  }
  sub.byType = ch.byType ?? {};
  return true;
}

/** Adds what a step sent to the metrics, once per step: a labelled counter costs a lookup per call. */
export function countDelivered(metrics: Metrics | undefined, counts: Record<'notification' | 'update' | 'delete', number>, alerts: number): void {
  if (!metrics) return;
  for (const kind of ['notification', 'update', 'delete'] as const) if (counts[kind] > 0) metrics.delivered(kind, counts[kind]);
  metrics.tally.alerts += alerts;
}
