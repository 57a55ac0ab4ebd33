/**
 * AUTH_TIMEOUT_MS's one extra period (src/server/server.ts, the `judge` in #onConnection and
 * `conn.spoke`, set when an auth message is being verified). docs/configuration.md: only "a socket whose message came in time
 * but is still being verified gets one more period". A socket that sent a frame that is no auth
 * message at all (bad JSON, a binary frame: each answered with bad_message and left open) is
 * being verified by nothing, so it is cut at AUTH_TIMEOUT_MS like a silent one, and its place
 * under MAX_UNAUTHENTICATED comes free for a waiting handshake within MAX_HANDSHAKE_WAIT_MS.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { TestClient } from './helpers/client.js';
import { daemonFleet } from './helpers/daemon.js';
import { freshDatabase } from './helpers/pg.js';

let db: string;
const fleet = daemonFleet(() => db);
beforeAll(async () => {
  db = await freshDatabase(['gf1']);
});
afterAll(async () => fleet.stopAll());

const T = 400;

/** Milliseconds from `t0` until the client's socket closed, and how. */
async function closedAfter(c: TestClient, t0: number): Promise<{ ms: number; code: number }> {
  const { code } = await c.closed;
  return { ms: Date.now() - t0, code };
}

it('a socket that sent only a malformed or binary frame is cut at AUTH_TIMEOUT_MS, as a silent one is', async () => {
  const d = await fleet.start({ authTimeoutMs: T });
  const t0 = Date.now();
  const silent = await TestClient.connect(d.url);
  const badJson = await TestClient.connect(d.url);
  const binary = await TestClient.connect(d.url);
  badJson.send('this is not json');
  binary.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  const [s, j, b] = await Promise.all([closedAfter(silent, t0), closedAfter(badJson, t0), closedAfter(binary, t0)]);
  expect(badJson.messages[0]?.code).toBe('bad_message');
  expect(binary.messages[0]?.code).toBe('bad_message');
  expect([s.code, j.code, b.code]).toEqual([4408, 4408, 4408]);
  // The silent one goes at T; the others are held a second period (2T) for a "verification"
  // that never started.
  expect(s.ms).toBeLessThan(T + 250);
  expect(j.ms, 'bad JSON socket closed after (ms)').toBeLessThan(T + 250);
  expect(b.ms, 'binary-frame socket closed after (ms)').toBeLessThan(T + 250);
}, 20_000);

it('two sockets holding MAX_UNAUTHENTICATED with one junk frame each free their places in time for a waiting handshake', async () => {
  // Per-address budget: loopback is not counted (no TRUST_PROXY_HOPS), as behind a proxy.
  const d = await fleet.start({ authTimeoutMs: T, limits: { maxUnauthenticated: 2, maxWaitMs: T + 300 } });
  const junk = [await TestClient.connect(d.url), await TestClient.connect(d.url)];
  for (const j of junk) j.send('x');
  // A real client arrives: it waits for a place, which the junk sockets give up at T.
  // Admitted, it is silent and later cut for that (4408); refused from the room, it gets 1013.
  const waiter = await TestClient.connect(d.url);
  const { code } = await waiter.closed;
  expect(waiter.messages.map((m) => m.code), 'what the waiting client was told').toEqual(['auth_timeout']);
  expect(code).toBe(4408);
}, 20_000);

it('control: the same with two silent sockets holding the places, the waiting handshake gets in', async () => {
  const d = await fleet.start({ authTimeoutMs: T, limits: { maxUnauthenticated: 2, maxWaitMs: T + 300 } });
  const idle = [await TestClient.connect(d.url), await TestClient.connect(d.url)];
  const waiter = await TestClient.connect(d.url);
  const { code } = await waiter.closed;
  expect(waiter.messages.map((m) => m.code)).toEqual(['auth_timeout']);
  expect(code).toBe(4408);
  for (const c of idle) c.close();
}, 20_000);
