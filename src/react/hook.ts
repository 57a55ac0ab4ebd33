/**
 * `useNotifications(options)` → { alerts, unread, unseen, byType, muted, hasMore, status,
 * markRead, markAllRead, markSeen, archive, unarchive, loadArchived, setMuted, loadMuted,
 * subscribe, loadMore }. Headless: the app draws its own bell. However many components call it with the
 * same `url` and `pollUrl`, the page holds one client and one socket; it closes when the last of
 * them unmounts.
 */
import { useCallback, useEffect, useSyncExternalStore } from 'react';
import { PgbellClient, type Alert, type ArchiveTarget, type ClientOptions, type State, type Status, type TypeCounts } from '../client/index.js';

export type { Alert, ArchiveTarget, ClientOptions, State, Status, TypeCounts };

interface Shared {
  client: PgbellClient;
  users: number;
  stopTimer: ReturnType<typeof setTimeout> | undefined;
}

const shared = new Map<string, Shared>();

function keyOf(o: ClientOptions): string {
  return `${o.url}|${o.pollUrl ?? ''}`;
}

function acquire(options: ClientOptions): Shared {
  const key = keyOf(options);
  let entry = shared.get(key);
  if (!entry) {
    entry = { client: new PgbellClient(options), users: 0, stopTimer: undefined };
    shared.set(key, entry);
  }
  return entry;
}

export interface Notifications extends State {
  markRead(ids: readonly string[]): Promise<void>;
  markAllRead(): Promise<void>;
  /** Marks these alerts seen, or every one ('all'): `unseen` drops (see PgbellClient.markSeen). */
  markSeen(ids: readonly string[] | 'all'): Promise<void>;
  /** Takes alerts out of the list: these ids, every read one (`{read: true}`) or all ('all'). */
  archive(target: ArchiveTarget): Promise<void>;
  unarchive(ids: readonly string[]): Promise<void>;
  /** A page of the archived alerts (not kept in the state; see PgbellClient.loadArchived). */
  loadArchived(opts?: { before?: string; limit?: number }): Promise<{ alerts: Alert[]; more: boolean }>;
  /** Mutes these types (the whole set; [] unmutes all); `muted` in the state says which are. */
  setMuted(types: readonly string[]): Promise<void>;
  /** Reads the muted types into `muted` (null until known). */
  loadMuted(): Promise<void>;
  subscribe(types: readonly string[]): Promise<void>;
  /** The next older page into `alerts` (see PgbellClient.loadMore); `hasMore` says if there is one. */
  loadMore(): Promise<void>;
  client: PgbellClient;
}

export function useNotifications(options: ClientOptions): Notifications {
  const entry = acquire(options);
  const { client } = entry;
  useEffect(() => {
    const e = acquire(options);
    e.users++;
    clearTimeout(e.stopTimer);
    void e.client.start();
    return () => {
      e.users--;
      // Deferred, so a component that remounts at once (React StrictMode, route changes)
      // keeps the same socket instead of reconnecting.
      if (e.users === 0) {
        e.stopTimer = setTimeout(() => {
          if (e.users > 0) return;
          e.client.stop();
          shared.delete(keyOf(options));
        }, 1000);
      }
    };
    // The client is keyed by url + pollUrl; other option changes need a new key to apply.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [keyOf(options)]);
  const subscribeStore = useCallback((onChange: () => void) => client.on('change', onChange), [client]);
  const state = useSyncExternalStore(subscribeStore, client.getState, client.getState);
  return {
    ...state,
    client,
    markRead: useCallback((ids: readonly string[]) => client.markRead(ids), [client]),
    markAllRead: useCallback(() => client.markAllRead(), [client]),
    markSeen: useCallback((ids: readonly string[] | 'all') => client.markSeen(ids), [client]),
    archive: useCallback((target: ArchiveTarget) => client.archive(target), [client]),
    unarchive: useCallback((ids: readonly string[]) => client.unarchive(ids), [client]),
    loadArchived: useCallback((opts?: { before?: string; limit?: number }) => client.loadArchived(opts), [client]),
    setMuted: useCallback((types: readonly string[]) => client.setMuted(types), [client]),
    loadMuted: useCallback(() => client.loadMuted(), [client]),
    subscribe: useCallback((types: readonly string[]) => client.subscribe(types), [client]),
    loadMore: useCallback(() => client.loadMore(), [client]),
  };
}

/** The same hook under the name the original app used. */
export const useWebSocket = useNotifications;
