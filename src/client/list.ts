/**
 * The list's rules that need no state of their own: its order, how far one poll reads, and the
 * bounded memory of archived ids. client.ts holds the list and applies them.
 */
import type { Alert } from './types.js';

/** Pages one poll reads at most (each is REPLAY_PAGE_ROWS changes); the next poll goes on. */
export const MAX_POLL_PAGES = 20;

/** Ids of alerts seen archived that are remembered, so an unarchived one is not announced as new. */
const ARCHIVED_MEMORY = 1000;

/** The list's order: createdAt, then id, both descending. */
export function newestFirst(a: Alert, b: Alert): number {
  return a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : a.id < b.id ? 1 : -1;
}

/** Adds `id` as the newest of the archived ids remembered, forgetting the oldest past the bound. */
export function rememberArchived(archived: Set<string>, id: string): void {
  archived.delete(id);
  archived.add(id);
  if (archived.size > ARCHIVED_MEMORY) archived.delete(archived.values().next().value!);
}
