/**
 * A listener closed while it is reconnecting (the database away): close() returns, and no
 * connection is made after it. pg-listen's reconnect loop does not look at close(), and ending
 * a client whose connection was already lost waits for ever: a daemon stopped then (SIGTERM
 * while Postgres restarts) never exited. Found by `npm run chaos -- --fanout redis`, where the
 * relay's listener is closed whenever the relay stands down.
 */
import { afterAll, expect, it } from 'vitest';
import { Listener } from '../src/sources/listen.js';
import { FaultProxy } from './chaos/proxy.js';
import { captureLogger } from './helpers/daemon.js';
import { freshDatabase } from './helpers/pg.js';
import { until } from './helpers/tab.js';
import net from 'node:net';

let proxy: FaultProxy | undefined;
afterAll(async () => proxy?.close());

/** A loopback port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

it('a listener closed while reconnecting stops: close() returns and nothing connects after', async () => {
  const db = new URL(await freshDatabase());
  const pgPort = Number(db.port || 5432);
  const dead = await deadPort();
  let up = true;
  proxy = await FaultProxy.start(() => (up ? pgPort : dead));
  db.host = `127.0.0.1:${proxy.port}`;
  const { log } = captureLogger();
  const listener = new Listener({ connectionString: db.toString(), channel: 'pgbell', log, checkIntervalMs: 1000, notify: async () => {} });
  await listener.start();
  expect(listener.state).toBe('connected');

  // The database goes away: the listener keeps trying to reconnect.
  up = false;
  proxy.cut();
  await until(() => listener.state === 'reconnecting', 10_000, 'the listener reconnecting');
  const t0 = Date.now();
  await listener.close();
  expect(Date.now() - t0).toBeLessThan(5000);

  // The database is back: a closed listener must not connect to it.
  up = true;
  await new Promise((r) => setTimeout(r, 6000));
  expect(proxy.connections).toBe(0);
}, 30_000);
