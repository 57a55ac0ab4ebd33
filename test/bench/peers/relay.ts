/**
 * Floor B: the least a relay can do. pg-listen → ws, no auth, no cursor, no features: a row
 * trigger sends the row in its NOTIFY, and each payload goes to the sockets that connected with
 * `?user=<its userId>`. What pgbell adds costs the difference between this and pgbell.
 *
 *   PORT=… DATABASE_URL=… node --import tsx test/bench/peers/relay.ts
 */
import http from 'node:http';
import pgListen from 'pg-listen';
import { WebSocketServer } from 'ws';
import { socketsByUser } from './sockets.js';

const server = http.createServer();
const sockets = socketsByUser(new WebSocketServer({ server }));
const sub = pgListen.default({ connectionString: process.env.DATABASE_URL! });
sub.notifications.on('relay', (row: { userId: string }) => {
  const frame = JSON.stringify(row);
  for (const ws of sockets.get(row.userId) ?? []) ws.send(frame);
});
await sub.connect();
await sub.listenTo('relay');
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.send?.('ready'));
