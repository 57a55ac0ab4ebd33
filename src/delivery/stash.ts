/**
 * What a live step prepares once per user and the hub keeps for a socket that is still syncing
 * (its "stash"): delivery writes it, the hub holds it, so it lives here, below both.
 */
import type { Change, UnreadByType } from '../db/changes.js';

/** One transaction's changes for one user, as a live step prepared them for every socket. */
export interface Stashed {
  tx: bigint;
  horizon: bigint;
  changes: UserChanges;
}

export interface UserChanges {
  list: Change[];
  /** Every index of `list`: what a socket without a type filter gets, shared by all of them. */
  all: number[];
  kinds: Array<'notification' | 'update' | 'delete' | 'preferences'>;
  alertJson: string[];
  bodies: string[];
  byType: UnreadByType | undefined;
  /** countsJson of byType for sockets without a type filter, once one needed it. */
  countsAll?: string;
}
