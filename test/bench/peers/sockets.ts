/** The peers' whole notion of a user: the `?user=` a socket connected with. */
import type { WebSocketServer, WebSocket } from 'ws';

/** userId → open sockets, kept up to date as sockets of `wss` connect and close. */
export function socketsByUser(wss: WebSocketServer): Map<string, Set<WebSocket>> {
  const sockets = new Map<string, Set<WebSocket>>();
  wss.on('connection', (ws, req) => {
    const user = new URL(req.url ?? '/', 'http://x').searchParams.get('user') ?? '';
    let set = sockets.get(user);
    if (!set) sockets.set(user, (set = new Set()));
    set.add(ws);
    ws.on('close', () => set.delete(ws));
  });
  return sockets;
}
