/**
 * Floor R: the least a relay can do that, like pgbell in notify mode, trusts the table and not
 * the hint. pgbell's triggers send the writer's transaction id (`{"txid":…}` on channel
 * `pgbell`); for each one this reads that transaction's rows in one indexed query (the
 * bookkeeping's "changedTxid" index, joined to "Alert" by primary key) and sends each row to the
 * sockets that connected with `?user=<its userId>`. No auth, no cursor, no counts, no batching:
 * the read is the only thing it adds to floor B.
 *
 *   PORT=… DATABASE_URL=… node --import tsx test/bench/peers/relay-read.ts   (a database `pgbell migrate` made)
 */
import http from 'node:http';
import pg from 'pg';
import pgListen from 'pg-listen';
import { WebSocketServer } from 'ws';
import { socketsByUser } from './sockets.js';

const server = http.createServer();
const sockets = socketsByUser(new WebSocketServer({ server }));
const reader = new pg.Client({ connectionString: process.env.DATABASE_URL!, application_name: 'bench-floor-r' });
await reader.connect();
const READ = `SELECT a.id, a."userId", a.type, a.title, a.message, a."createdAt"
                FROM pgbell."AlertChange" c JOIN "Alert" a ON a.id = c.key
               WHERE c."changedTxid" = $1::xid8`;
const sub = pgListen.default({ connectionString: process.env.DATABASE_URL! });
// One read at a time, in the order the notifications came (one connection runs one query at a time anyway).
let chain: Promise<void> = Promise.resolve();
sub.notifications.on('pgbell', (payload: { txid?: string }) => {
  const txid = payload?.txid;
  if (typeof txid !== 'string') return;
  chain = chain.then(async () => {
    const { rows } = await reader.query({ name: 'floor_r_read', text: READ, values: [txid] });
    for (const row of rows as Array<{ userId: string }>) {
      const frame = JSON.stringify(row);
      for (const ws of sockets.get(row.userId) ?? []) ws.send(frame);
    }
  });
});
await sub.connect();
await sub.listenTo('pgbell');
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.send?.('ready'));
