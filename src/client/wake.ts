/**
 * The moments a socket may have died without a close reaching the page, so the client checks it
 * at once instead of waiting for a timeout or a backoff step: the network is back (`online`) or
 * gone (`offline`), the page is shown again (`visibilitychange`), it comes back from the
 * back/forward cache (`pageshow` with `persisted`), or it is about to be frozen (`freeze`, Page
 * Lifecycle: the leader hands its connection over before it stops running).
 */

export type Wake = 'online' | 'offline' | 'visible' | 'pageshow' | 'sleep' | 'freeze';

/** Calls `on` for each of those events; returns the function that stops listening. Nothing outside a browser. */
/** The part of `window` and `document` used here (the client compiles without the DOM's types). */
interface Target {
  addEventListener(type: string, fn: (ev: { persisted?: boolean }) => void): void;
  removeEventListener(type: string, fn: (ev: { persisted?: boolean }) => void): void;
}

export function watchWake(on: (why: Wake) => void): () => void {
  const w = globalThis as unknown as Partial<Target> & { document?: Target & { visibilityState: string } };
  const doc = w.document;
  if (!w.addEventListener || !w.removeEventListener || !doc) return () => {};
  const online = () => on('online');
  const offline = () => on('offline');
  const visible = () => {
    if (doc.visibilityState === 'visible') on('visible');
  };
  const pageshow = (ev: { persisted?: boolean }) => {
    if (ev.persisted) on('pageshow');
  };
  const freeze = () => on('freeze');
  w.addEventListener('online', online);
  w.addEventListener('offline', offline);
  w.addEventListener('pageshow', pageshow);
  doc.addEventListener('visibilitychange', visible);
  doc.addEventListener('freeze', freeze);
  return () => {
    w.removeEventListener!('online', online);
    w.removeEventListener!('offline', offline);
    w.removeEventListener!('pageshow', pageshow);
    doc.removeEventListener('visibilitychange', visible);
    doc.removeEventListener('freeze', freeze);
  };
}
