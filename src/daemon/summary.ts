/**
 * The info-level heartbeat of the log: what happened in the last interval, one line, and
 * only when something did. It stands in for the per-alert and per-socket lines, which are
 * debug (at 1,000 alerts/s they doubled delivery latency).
 */
import type { Logger } from '../log.js';
import type { Tally } from '../metrics.js';

export function startSummary(opts: { log: Logger; tally: Tally; intervalMs: number; connections: () => number; users: () => number }): () => void {
  const { log, tally, intervalMs } = opts;
  let last = { ...tally };
  const timer = setInterval(() => {
    const d = {
      alerts: tally.alerts - last.alerts,
      delivered: tally.delivered - last.delivered,
      authenticated: tally.authenticated - last.authenticated,
      replayed: tally.replayed - last.replayed,
      refused: tally.refused - last.refused,
    };
    last = { ...tally };
    if (Object.values(d).every((n) => n === 0)) return;
    const connections = opts.connections();
    const users = opts.users();
    // Replays and refusals only when there were any: a reconnect storm's, counted here rather
    // than written one line per socket.
    const extra = `${d.replayed > 0 ? `; ${d.replayed} changes replayed from cursors` : ''}${d.refused > 0 ? `; ${d.refused} sockets refused at the connection limits (1013)` : ''}`;
    log[d.refused > 0 ? 'warn' : 'info'](
      { ...d, connections, users, intervalMs },
      `last ${formatMs(intervalMs)}: ${d.alerts} alerts, ${d.delivered} messages delivered, ${d.authenticated} sockets authenticated${extra}; now ${connections} connections of ${users} users`,
    );
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
