/**
 * A browser tab as the lose-nothing tests see it: a socket that keeps the last cursor it was
 * given and, when told to, reconnects (to any daemon) resuming from it. It records every alert
 * id it was sent, and any id sent twice on one connection (never allowed; across a reconnect
 * a repeat is allowed).
 */
import { TestClient } from './client.js';

export class Tab {
  readonly ids = new Set<string>();
  readonly repeatsWithinConnection: string[] = [];
  readonly deleted = new Set<string>();
  readonly updates: any[] = [];
  resets = 0;
  /** `notifications` frames received, over all connections. */
  batchFrames = 0;
  cursor: string | undefined;
  client: TestClient | undefined;
  connections = 0;

  constructor(
    private readonly token: string,
    /** Ask for `notifications` frames, as pgbell/client does. */
    private readonly batch = false,
  ) {}

  /** Connects to `url`, resuming from the last cursor; resolves when `synced` arrived. */
  async connect(url: string, timeoutMs = 15_000): Promise<this> {
    const client = await TestClient.connect(url);
    this.client = client;
    this.connections++;
    const seenHere = new Set<string>();
    client.ws.on('message', (data) => {
      const m = JSON.parse(String(data));
      if (m.cursor) this.cursor = m.cursor;
      const alerts = m.type === 'notification' ? [m.alert] : m.type === 'notifications' ? m.alerts : [];
      if (m.type === 'notifications') this.batchFrames++;
      for (const a of alerts) {
        if (seenHere.has(a.id)) this.repeatsWithinConnection.push(a.id);
        seenHere.add(a.id);
        this.ids.add(a.id);
      }
      if (m.type === 'update') {
        // An alert inserted and changed again before it was delivered arrives as `update`
        // (its current state); it counts as received.
        this.updates.push(m);
        this.ids.add(m.alert.id);
      } else if (m.type === 'delete') {
        this.deleted.add(m.id);
      } else if (m.type === 'reset') {
        this.resets++;
      }
    });
    client.send({ type: 'auth', token: this.token, ...(this.batch ? { batch: true } : {}), ...(this.cursor ? { after: this.cursor } : {}) });
    await client.next((m) => m.type === 'synced', timeoutMs);
    return this;
  }

  /** Drops the socket without a goodbye, like a closed laptop lid. */
  drop(): void {
    this.client?.ws.terminate();
  }

  close(): void {
    this.client?.close();
  }
}

/** Waits until `check` passes, polling. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Whether a message brings alert `id` as new (`notification`, or within `notifications`). */
export const arrived =
  (id: string) =>
  (m: any): boolean =>
    (m.type === 'notification' && m.alert.id === id) || (m.type === 'notifications' && m.alerts.some((a: any) => a.id === id));

/** What a client holds after applying `messages` in order, as pgbell/client does: id → alert. */
export function held(messages: any[]): Map<string, any> {
  const out = new Map<string, any>();
  for (const m of messages) {
    for (const a of m.type === 'notification' || m.type === 'update' ? [m.alert] : m.type === 'notifications' ? m.alerts : []) out.set(a.id, a);
    if (m.type === 'delete') out.delete(m.id);
  }
  return out;
}
