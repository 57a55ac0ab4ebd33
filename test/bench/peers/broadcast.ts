/**
 * Peer D: the design pgbell replaced. The writer INSERTs, then calls POST /broadcast with the
 * alert; this server sends it to the user's sockets. No trigger, no LISTEN; a writer that
 * forgets the call (psql, a cron job) notifies no one.
 *
 *   PORT=… node --import tsx test/bench/peers/broadcast.ts
 */
import http from 'node:http';
import { WebSocketServer } from 'ws';
import { socketsByUser } from './sockets.js';

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/broadcast') {
    res.writeHead(404).end();
    return;
  }
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c: string) => (body += c));
  req.on('end', () => {
    const alert = JSON.parse(body) as { userId: string };
    const frame = JSON.stringify(alert);
    let n = 0;
    for (const ws of sockets.get(alert.userId) ?? []) {
      ws.send(frame);
      n++;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(`{"sent":${n}}`);
  });
});
const sockets = socketsByUser(new WebSocketServer({ server }));
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.send?.('ready'));
