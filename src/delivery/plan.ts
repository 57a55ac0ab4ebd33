/**
 * Planning a sync: what each subscriber's read starts from, and one entry per user for the
 * batched reads. Pure (no reads, no sends); separate from Delivery so the choice of starting
 * point reads apart from the retries and sends around it.
 */
import { decodeCursor, type CursorState } from './cursor.js';
import type { Subscriber } from './hub.js';

/** What a sync reads from for one subscriber: a cursor and its epoch, or nothing (with why not). */
export interface Plan {
  from: CursorState | null;
  epoch: string;
  reset: string | null;
}

/**
 * Where a sync reads from: each subscriber's plan (its resume point, its cursor in a catch-up,
 * the cursor its client sent, or nothing), each user's oldest horizon among its subscribers, and
 * the subscribers of each user.
 */
export function planSync(subs: Subscriber[], catchUp: boolean): { plans: Map<Subscriber, Plan>; users: Array<[string, bigint | null]>; subsOf: Map<string, Subscriber[]> } {
  const plans = new Map<Subscriber, Plan>();
  for (const sub of subs) {
    if (!sub.open) continue;
    if (sub.resumeFrom) {
      plans.set(sub, { from: sub.resumeFrom, epoch: sub.epoch, reset: null });
    } else if (catchUp) {
      plans.set(sub, { from: sub.cursor, epoch: sub.epoch, reset: null });
    } else if (sub.after === null) {
      plans.set(sub, { from: null, epoch: '', reset: null });
    } else {
      const d = decodeCursor(sub.after);
      plans.set(sub, d.ok ? { from: d.cursor, epoch: d.epoch, reset: null } : { from: null, epoch: '', reset: d.reason });
    }
  }
  // One read per batch of users, from the oldest horizon among each user's subscribers.
  const afterByUser = new Map<string, bigint | null>();
  for (const [sub, plan] of plans) {
    const h = plan.from?.horizon ?? null;
    const prev = afterByUser.get(sub.userId);
    afterByUser.set(sub.userId, prev === undefined ? h : prev === null ? h : h === null || prev < h ? prev : h);
  }
  const users = [...afterByUser];
  const subsOf = new Map<string, Subscriber[]>();
  for (const sub of plans.keys()) {
    const list = subsOf.get(sub.userId);
    if (list) list.push(sub);
    else subsOf.set(sub.userId, [sub]);
  }
  return { plans, users, subsOf };
}
