/**
 * Floor W: the least a relay fed by logical replication can do. A bare `pgoutput` consumer of a
 * publication on "Alert" (no triggers at all) → ws, no auth, no cursor, no features: each
 * inserted row goes to the sockets that connected with `?user=<its userId>`. pgbell in WAL mode
 * costs the difference between this and it.
 *
 *   PORT=… DATABASE_URL=… node --import tsx test/bench/peers/relay-wal.ts   (publication bench_wal)
 */
import http from 'node:http';
import type pg from 'pg';
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { WebSocketServer } from 'ws';
import { socketsByUser } from './sockets.js';

const server = http.createServer();
const sockets = socketsByUser(new WebSocketServer({ server }));

/** pgoutput on a temporary slot made on the stream's own connection. */
class TemporarySlot extends PgoutputPlugin {
  override async start(client: pg.Client, slot: string): Promise<unknown> {
    const { rows } = await client.query<{ consistent_point: string }>(`CREATE_REPLICATION_SLOT "${slot}" TEMPORARY LOGICAL pgoutput`);
    return super.start(client, slot, rows[0]!.consistent_point);
  }
}

const service = new LogicalReplicationService({ connectionString: process.env.DATABASE_URL! }, { acknowledge: { auto: true, timeoutSeconds: 10 } });
service.on('data', (_lsn: string, msg: Pgoutput.Message) => {
  if (msg.tag !== 'insert' || msg.relation.name !== 'Alert') return;
  const r = msg.new as { id: string; userId: string; type: string; title: string; message: string; createdAt: Date };
  const frame = JSON.stringify({ id: r.id, userId: r.userId, type: r.type, title: r.title, message: r.message, createdAt: r.createdAt });
  for (const ws of sockets.get(r.userId) ?? []) ws.send(frame);
});
service.on('error', (err: Error) => console.error('relay-wal:', err.message));
service.once('start', () => server.listen(Number(process.env.PORT), '127.0.0.1', () => process.send?.('ready')));
void service.subscribe(new TemporarySlot({ protoVersion: 1, publicationNames: ['bench_wal'] }), `bench_wal_${process.pid}`);
