/**
 * AUTH_TIMEOUT_MS against a daemon whose event loop was busy. In a reconnect storm a worker's
 * loop can be busy for seconds; when the busy spell ends, the loop runs its due timers before it
 * reads its sockets, and the auth deadline used to cut sockets whose auth message had arrived in
 * time ("no auth message within 5000 ms"): thousands of them in a 60,000-socket storm, each then
 * reconnecting into the same storm. Here the daemon runs in this process, and the test holds the
 * loop busy itself, after the auth message is on its way and past the deadline.
 */
import { afterAll, expect, it } from 'vitest';
import { TestClient } from './helpers/client.js';
import { startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase } from './helpers/pg.js';

let daemon: TestDaemon | undefined;
afterAll(async () => daemon?.stop());

/** Holds this process's event loop for `ms`, as a burst of handshakes does. */
function busy(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end);
}

it('an auth message that arrived in time is read, not cut, when a busy loop reaches the deadline first; a silent socket is still cut', async () => {
  const db = await freshDatabase(['stall1']);
  daemon = await startTestDaemon(db, { authTimeoutMs: 300 });
  const token = await tokenFor('stall1');
  const speaker = await TestClient.connect(daemon.url);
  const silent = await TestClient.connect(daemon.url);
  speaker.send({ type: 'auth', token });
  // The message is in the daemon's socket buffer; the loop is busy until past its deadline.
  busy(600);
  const ready = await speaker.next((m) => m.type === 'ready' || m.type === 'error', 10_000);
  expect(ready.type).toBe('ready');
  await speaker.next((m) => m.type === 'synced', 10_000);
  // The silent one said nothing: cut as before, with auth_timeout's close code.
  const closed = await silent.closed;
  expect(closed.code).toBe(4408);
  expect(daemon.logs.messages().some((m) => /no auth message within 300 ms/.test(m))).toBe(true);
  speaker.close();
});
