/**
 * Peer C: what a Node team writes instead of pgbell. Socket.IO rooms (one per user) fed by
 * pg-listen; the row comes in the NOTIFY. No auth, no resume: a reconnecting client misses what
 * was sent meanwhile.
 *
 *   PORT=… DATABASE_URL=… node --import tsx test/bench/peers/socketio.ts
 */
import http from 'node:http';
import pgListen from 'pg-listen';
import { Server } from 'socket.io';

const server = http.createServer();
const io = new Server(server, { transports: ['websocket'], serveClient: false });
io.on('connection', (socket) => {
  void socket.join(String(socket.handshake.query.user ?? ''));
});
const sub = pgListen.default({ connectionString: process.env.DATABASE_URL! });
sub.notifications.on('relay', (row: { userId: string }) => {
  io.to(row.userId).emit('alert', row);
});
await sub.connect();
await sub.listenTo('relay');
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.send?.('ready'));
