/**
 * Who is connected: user id → that user's authenticated sockets. Fan-out happens here, and
 * only here, so "an alert reaches its user's sockets and no one else's" has one home.
 */
import type { WebSocket } from 'ws';
import type { Logger } from './log.js';
import type { WireAlert } from './protocol.js';

export class Hub {
  readonly #byUser = new Map<string, Set<WebSocket>>();
  #sockets = 0;

  constructor(private readonly log: Logger) {}

  add(userId: string, ws: WebSocket): void {
    let set = this.#byUser.get(userId);
    if (!set) this.#byUser.set(userId, (set = new Set()));
    if (!set.has(ws)) {
      set.add(ws);
      this.#sockets++;
    }
  }

  remove(userId: string, ws: WebSocket): void {
    const set = this.#byUser.get(userId);
    if (!set?.delete(ws)) return;
    this.#sockets--;
    if (set.size === 0) this.#byUser.delete(userId);
  }

  /** Open authenticated sockets. */
  get connections(): number {
    return this.#sockets;
  }

  /** Users with at least one socket: the only users whose alerts are worth reading. */
  userIds(): string[] {
    return [...this.#byUser.keys()];
  }

  /** Sends each alert to every socket of its user. Each alert is serialized once. */
  deliver(alerts: readonly WireAlert[]): void {
    // Checked once per batch: the log line's string is otherwise built for every alert.
    const logEach = this.log.isLevelEnabled('info');
    for (const alert of alerts) {
      const set = this.#byUser.get(alert.userId);
      if (!set || set.size === 0) continue;
      const frame = JSON.stringify({ type: 'notification', alert });
      let sent = 0;
      for (const ws of set) {
        if (ws.readyState !== ws.OPEN) continue;
        ws.send(frame);
        sent++;
      }
      if (logEach) this.log.info({ userId: alert.userId, alertId: alert.id, connections: sent }, `Broadcasted notification to user ${alert.userId} (${sent} connections)`);
    }
  }

  /** Every socket, for shutdown. */
  *all(): Iterable<WebSocket> {
    for (const set of this.#byUser.values()) yield* set;
  }
}
