/**
 * What one subscriber is sent once its sync read is back: `ready` (first time), a `reset` when
 * its cursor cannot be resumed, the replay of what it missed (paused while its socket is
 * congested), `synced`, then what live steps handled meanwhile (sendStash), after which it is
 * live. Separate from Delivery, which owns the read (its batching, retries and epoch checks):
 * this is the per-socket protocol of a sync, given the read's result.
 */
import { CursorState, resumeProblem } from './cursor.js';
import { countsJson, countsOf, sawTx, sendable, type Change, type SinceBatch } from '../db/changes.js';
import type { Subscriber } from './hub.js';
import type { Stashed } from './stash.js';
import type { Metrics } from '../metrics.js';
import { body, frame, mayHold, shown, userChanges, userOf } from './messages.js';
import type { DeliveryOptions } from './options.js';
import { countDelivered, offer, sendAll, type Outbox } from './outbox.js';
import type { Plan } from './plan.js';
import type { Recent } from './recent.js';

/**
 * What live steps handled that the sync read did not see (in live order), then what they
 * stashed while it ran, minus what the subscriber has (its cursor says): now live.
 */
export function sendStash(sub: Subscriber, epoch: string, metrics: Metrics | undefined, unseen: Recent[]): void {
  const stash = sub.stash;
  sub.stash = null;
  const missed: Stashed[] = [];
  for (const e of unseen) {
    const list = e.group.filter((c) => userOf(c) === sub.userId);
    if (list.length > 0) missed.push({ tx: e.tx, horizon: e.horizon, changes: userChanges(e.tx, list, e.unread.get(sub.userId)) });
  }
  if (missed.length === 0 && (!stash || stash.length === 0)) return;
  const outbox: Outbox = new Map();
  const counts = { notification: 0, update: 0, delete: 0 };
  for (const { tx, horizon, changes } of [...missed, ...(stash ?? [])]) offer(sub, epoch, tx, changes, horizon, outbox, counts);
  for (const [s, frames] of outbox) sendAll(s, frames);
  countDelivered(metrics, counts, 0);
}

/** Sends one subscriber its sync, given the read it was part of (see the top of this file). */
export function syncOne(o: DeliveryOptions, epoch: string, resubscribe: (sub: Subscriber) => Promise<void>, sub: Subscriber, plan: Plan, res: SinceBatch, mine: Change[], catchUp: boolean, unseen: Recent[]): void {
  if (!sub.open) return;
  // A replay is written as it goes: corked, its frames would count against the socket's
  // bound before the kernel had taken any, and a backlog would pause at every bound's worth.
  if (mine.length > 0) sendSync(o, epoch, resubscribe, sub, plan, res, mine, catchUp, unseen);
  else sub.corked(() => sendSync(o, epoch, resubscribe, sub, plan, res, mine, catchUp, unseen));
}

function sendSync(o: DeliveryOptions, epoch: string, resubscribe: (sub: Subscriber) => Promise<void>, sub: Subscriber, plan: Plan, res: SinceBatch, mine: Change[], catchUp: boolean, unseen: Recent[]): void {
  const { log } = o;
  const uid = sub.userId;
  const byType = res.unread.get(uid) ?? {};
  // The read's muted set decides the whole replay: an alert of a type muted since is not sent,
  // and one of a type unmuted since is (the client reloads its list on `preferences` anyway).
  sub.muted = new Set(res.muted?.get(uid) ?? []);
  const counts = countsOf(byType, sub.types);
  const fields = countsJson(counts);
  let { from, reset } = plan;
  if (from) {
    reset = resumeProblem(from, plan.epoch, res, uid, o.maxReplay);
    if (reset) from = null;
  }
  if (!sub.readySent) {
    sub.send(JSON.stringify({ type: 'ready', userId: uid, email: sub.email, ...counts }));
    sub.readySent = true;
  }
  const continuing = sub.resumeFrom !== null;
  // What the replay this one continues sent as new (see resumeSentNew in hub.ts).
  let sentNew = continuing ? sub.resumeSentNew : null;
  sub.resumeFrom = null;
  sub.resumeSentNew = null;
  if (reset) {
    log.info({ userId: uid, reason: reset }, `cursor reset for user ${uid}: ${reset}`);
    sub.send(JSON.stringify({ type: 'reset', reason: reset }));
  }
  let replayed = 0;
  if (from) {
    const cursor = from.encode(res.epoch);
    // Unbounded: where a paused replay goes on from. A live cursor's bound (MAX_MEMORY_IDS)
    // would forget the oldest of a long backlog's transactions, all above the client's horizon,
    // and the continuation would send them again on this connection.
    const sent = new CursorState(from.horizon, from.ids, from.read, Infinity);
    for (let i = 0; i < mine.length; ) {
      const tx = mine[i]!.txid;
      let j = i;
      while (j < mine.length && mine[j]!.txid === tx) j++;
      if (tx >= from.horizon && !from.has(tx)) {
        // A client that reads slower than its backlog arrives: stop between transactions,
        // wait for its buffer to drain, then go on from what it was sent (it is not live
        // meanwhile, so nothing newer overtakes the backlog).
        if (sub.congested) {
          sub.cursor = null;
          // The rest is read again when it goes on, live changes included.
          sub.stash = null;
          sub.resumeFrom = sent;
          sub.resumeSentNew = sentNew;
          sub.epoch = res.epoch;
          log.info({ userId: uid, replayed }, `paused a replay to user ${uid} until its socket drains`);
          void sub.drained().then(() => {
            if (sub.open) void resubscribe(sub);
          });
          return;
        }
        for (const c of mine.slice(i, j)) {
          if (!sendable(c)) continue;
          // New unless the client had its insert, or an earlier part of this replay sent it.
          const isNew = c.kind === 'alert' && !from.has(c.insertTxid) && sentNew?.get(c.alert.id) !== c.insertTxid;
          const s = shown(sub, c, mayHold(c, !isNew));
          if (s === null) continue;
          sub.send(frame(body(s, isNew), fields, cursor), true);
          if (isNew && c.kind === 'alert') (sentNew ??= new Map()).set(c.alert.id, c.insertTxid);
          replayed++;
        }
        sent.add(tx);
      }
      i = j;
    }
  }
  // Seen now: everything below the read's horizon (all finished, so all read), and every
  // transaction at or above it that the read saw, whether sent now or before.
  // Never an id at or above the read's xmax: no committed transaction has one (a row that
  // does came from another cluster's restore), and a cursor holding it would skip the real
  // transaction that gets it later.
  // And, in memory, every transaction the read saw (see #read in cursor.ts): a live step that
  // waited behind an invisible commit may bring one of them after this, and the read may have
  // found its rows only as a later transaction left them.
  const next = new CursorState(res.xmin, from?.ids ?? [], { xmax: res.xmax, xip: res.xip });
  for (const c of mine) if (c.txid < res.xmax) next.add(c.txid);
  // A stashed transaction the read saw is in what it sent, though perhaps in a newer state (an
  // alert it changed was changed again, and the read found the row stamped with the later
  // transaction): offered from the stash, it would repeat the alert, stale.
  for (const e of sub.stash ?? []) if (e.tx < res.xmax && sawTx(res, e.tx)) next.add(e.tx);
  sub.cursor = next;
  sub.epoch = res.epoch;
  sub.byType = byType;
  if (!catchUp || reset || continuing) sub.send(JSON.stringify({ type: 'synced', cursor: next.encode(res.epoch), ...counts }));
  sendStash(sub, epoch, o.metrics, unseen);
  o.metrics?.replayed(replayed, catchUp);
  // Per socket, so debug: after a restart every socket resumes (the info summary counts them).
  if (replayed > 0 && log.isLevelEnabled('debug')) log.debug({ userId: uid, replayed, catchUp }, `replayed ${replayed} changes to user ${uid}`);
}
