/**
 * The counts (unread, unseen, per type): reading them from a server message or response, and
 * working out what a change shown before the server confirms it does to them. Pure functions of
 * what they are given; client.ts holds the counts in its state and applies the results.
 */
import type { Alert, State } from './types.js';

export type Counts = Pick<State, 'unread' | 'unseen' | 'byType'>;

/** The counts a server message or response carries (an older daemon sends only `unread`). */
export function countsIn(m: { unread?: unknown; unseen?: unknown; byType?: unknown }): Partial<Counts> {
  return {
    ...(typeof m.unread === 'number' ? { unread: m.unread } : {}),
    ...(typeof m.unseen === 'number' ? { unseen: m.unseen } : {}),
    ...(m.byType && typeof m.byType === 'object' ? { byType: m.byType as Counts['byType'] } : {}),
  };
}

/** What an alert adds to the counts: unread and unseen, unless archived or read. */
export function weight(a: Alert | null | undefined): [number, number] {
  return !a || a.archived || a.read ? [0, 0] : [1, a.seen ? 0 : 1];
}

/** The counts without the types just muted (until the server's counts come). */
export function withoutTypes(counts: Counts, gone: Set<string>): Counts {
  const byType = { ...counts.byType };
  let { unread, unseen } = counts;
  for (const t of gone) {
    unread -= byType[t]?.unread ?? 0;
    unseen -= byType[t]?.unseen ?? 0;
    delete byType[t];
  }
  return { unread: Math.max(0, unread), unseen: Math.max(0, unseen), byType };
}
