/**
 * What a peer that does not play along can hold: handshakes waiting for a place, sockets it was
 * refused, and event streams it stopped reading. Each is bounded, and a socket pgbell has closed
 * is gone even when its peer never answers the close.
 */
import net from 'node:net';
import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from './helpers/client.js';
import { daemonFleet, tokenFor } from './helpers/daemon.js';
import { freshDatabase } from './helpers/pg.js';
import { until } from './helpers/tab.js';

let db: string;

beforeAll(async () => {
  db = await freshDatabase(['pa', 'pb', 'pc']);
});
afterAll(async () => {
  await fleet.stopAll();
});

const fleet = daemonFleet(() => db);

/** A masked client text frame (RFC 6455 §5.2), as a browser would send it. */
function textFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x81, 0x80 | len]) : Buffer.from([0x81, 0x80 | 126, len >> 8, len & 0xff]);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = payload[i]! ^ mask[i % 4]!;
  return Buffer.concat([head, mask, body]);
}

function upgradeRequest(port: number): string {
  return ['GET / HTTP/1.1', `Host: 127.0.0.1:${port}`, 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`, 'Sec-WebSocket-Version: 13', '', ''].join('\r\n');
}

/**
 * A raw TCP peer that reads whatever comes and never answers a close frame: it keeps its end
 * open until the server cuts the connection.
 */
function deafPeer(port: number): { sock: net.Socket; received: () => string; closed: Promise<number> } {
  const sock = net.connect(port, '127.0.0.1');
  let got = '';
  sock.on('data', (d) => (got += d.toString('latin1')));
  sock.on('error', () => {});
  const t0 = Date.now();
  const closed = new Promise<number>((resolve) => sock.once('close', () => resolve(Date.now() - t0)));
  return { sock, received: () => got, closed };
}

async function upgraded(peer: { received: () => string }): Promise<void> {
  const t0 = Date.now();
  while (!peer.received().includes('\r\n\r\n')) {
    if (Date.now() - t0 > 5000) throw new Error(`no handshake answer: ${JSON.stringify(peer.received())}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Waits at most `ms` for the peer's socket to close; the time it took, or null. */
function closedWithin(peer: { closed: Promise<number> }, ms: number): Promise<number | null> {
  return Promise.race([peer.closed, new Promise<null>((r) => setTimeout(() => r(null), ms))]);
}

describe('the waiting room', () => {
  it('holds at most MAX_WAITING_BYTES in all: a handshake beyond it is refused (1013), one sending early bytes past it is cut; emptied, it admits again', async () => {
    const budget = 256 * 1024;
    const d = await fleet.start({ limits: { maxConnections: 100, maxUnauthenticated: 1, maxWaitMs: 20_000, maxWaitingBytes: budget } });
    const port = Number(new URL(d.url).port);
    const details = async () => (await (await fetch(`${d.http}/health`)).json()) as { waiting: number; waitingBytes: number };
    const idle = await TestClient.connect(d.url);
    // Twenty handshakes from one (loopback, so uncounted per address) client, each sending
    // 60 KiB before its upgrade: within the per-handshake 64 KiB, 1.2 MB together.
    const early = 60 * 1024;
    const peers: Array<ReturnType<typeof deafPeer>> = [];
    for (let i = 0; i < 20; i++) {
      const p = deafPeer(port);
      p.sock.write(upgradeRequest(port));
      p.sock.write(Buffer.alloc(early, 0x61));
      peers.push(p);
      await new Promise((r) => setTimeout(r, 20));
    }
    const open = () => peers.filter((p) => !p.sock.destroyed && p.sock.readyState === 'open' && p.received() === '').length;
    // What the room held settles once every chunk has arrived.
    let last = -1;
    for (let i = 0; i < 100; i++) {
      const h = await details();
      if (h.waitingBytes === last) break;
      last = h.waitingBytes;
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 300));
    const h = await details();
    expect(h.waitingBytes).toBeLessThanOrEqual(budget);
    expect(h.waiting).toBeLessThanOrEqual(Math.floor(budget / early));
    expect(open()).toBeLessThanOrEqual(Math.floor(budget / early));
    expect(open()).toBeGreaterThan(0);
    // The rest were refused (1013) on arrival or cut when their bytes came past the budget.
    const refused = peers.filter((p) => p.received().includes('server_full')).length;
    const cut = peers.filter((p) => p.sock.readyState !== 'open' && p.received() === '').length;
    expect(open() + refused + cut).toBe(peers.length);
    for (const p of peers) p.sock.destroy();
    await new Promise((r) => setTimeout(r, 200));
    expect((await details()).waitingBytes).toBe(0);
    // Empty again: a handshake that sends nothing early waits as before, and is let in.
    let opened = false;
    const next = await new Promise<TestClient>((resolve) => {
      void TestClient.connect(d.url).then((c) => {
        opened = true;
        resolve(c);
      });
      void until(async () => (await details()).waiting === 1, 5000, 'one waiting').then(() => idle.close());
    });
    expect(opened).toBe(true);
    next.close();
  });
});

describe('refused sockets', () => {
  it('a peer that ignores the close frame is cut once it is refused (server_full at MAX_CONNECTIONS, a bad token, too many for its user), not held for ws\'s 30 s close wait', async () => {
    const d = await fleet.start({ limits: { maxConnections: 3, maxWaitMs: 0, maxPerUser: 1 } });
    const port = Number(new URL(d.url).port);
    const holder = await TestClient.ready(d.url, await tokenFor('pa'));

    // A bad token: refused with 4401 after its auth message.
    const bad = deafPeer(port);
    bad.sock.write(upgradeRequest(port));
    await upgraded(bad);
    bad.sock.write(textFrame(JSON.stringify({ type: 'auth', token: 'not-a-token' })));
    // A second socket of a user at MAX_CONNECTIONS_PER_USER: refused with 4409.
    const second = deafPeer(port);
    second.sock.write(upgradeRequest(port));
    await upgraded(second);
    second.sock.write(textFrame(JSON.stringify({ type: 'auth', token: await tokenFor('pa') })));
    const times = await Promise.all([closedWithin(bad, 5000), closedWithin(second, 5000)]);
    expect(bad.received()).toContain('invalid_token');
    expect(second.received()).toContain('too_many_connections');
    expect(times.every((t) => t !== null)).toBe(true);

    // Two idle sockets fill MAX_CONNECTIONS: the next is refused with 1013 at once.
    const idle = [await TestClient.connect(d.url), await TestClient.connect(d.url)];
    const full = deafPeer(port);
    full.sock.write(upgradeRequest(port));
    await upgraded(full);
    const t = await closedWithin(full, 5000);
    expect(full.received()).toContain('server_full');
    expect(t).not.toBeNull();
    // A client that answers the close still reads why: the error, then the code.
    const polite = await TestClient.connect(d.url);
    expect(await polite.closed).toEqual({ code: 1013, reason: 'server_full' });
    expect(polite.messages).toEqual([{ type: 'error', code: 'server_full', message: 'The server is at its connection limit; try again later' }]);
    for (const c of [holder, ...idle]) c.close();
  });

  it('a refused socket that sends a frame ws cannot parse does not take the daemon down', async () => {
    const d = await fleet.start({ limits: { maxConnections: 1, maxWaitMs: 0 } });
    const port = Number(new URL(d.url).port);
    const idle = await TestClient.connect(d.url);
    const peer = deafPeer(port);
    // The handshake and a malformed frame (reserved bits set) in one write.
    peer.sock.write(Buffer.concat([Buffer.from(upgradeRequest(port)), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff])]));
    await closedWithin(peer, 5000);
    expect(peer.received()).toContain('server_full');
    expect((await fetch(`${d.http}/health`)).status).toBe(200);
    idle.close();
  });
});

describe('event streams', () => {
  /** Opens /alerts/stream on a raw socket and reads until `synced`; `small`: a 1 KiB read buffer. */
  async function rawStream(port: number, token: string, small: boolean): Promise<net.Socket> {
    // Socket takes the stream options its types leave out.
    const sock = small ? new net.Socket({ readableHighWaterMark: 1024 } as net.SocketConstructorOpts) : new net.Socket();
    sock.on('error', () => {});
    let got = '';
    const synced = new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer) => {
        got += d.toString('latin1');
        if (got.includes('event: synced')) {
          sock.off('data', onData);
          resolve();
        }
      };
      sock.on('data', onData);
      setTimeout(() => reject(new Error(`no synced: ${got.slice(0, 300)}`)), 5000);
    });
    sock.connect(port, '127.0.0.1');
    sock.write(['GET /alerts/stream HTTP/1.1', `Host: 127.0.0.1:${port}`, `Authorization: Bearer ${token}`, 'Accept: text/event-stream', '', ''].join('\r\n'));
    await synced;
    // From here on it reads nothing: its buffers fill, then the daemon's.
    sock.pause();
    return sock;
  }

  it.each([
    ['a raw socket that stops reading after `synced`', false],
    ['a paused socket with a 1 KiB read buffer (a peer whose network went away)', true],
  ] as const)('%s: the stream is terminated within two heartbeats of its output backing up, and no longer counts toward its user', async (_what, small) => {
    const heartbeatMs = 400;
    const d = await fleet.start({ heartbeatMs, limits: { maxPerUser: 1, maxBufferedBytes: 256 << 20 } });
    const port = Number(new URL(d.url).port);
    const user = small ? 'pb' : 'pc';
    const token = await tokenFor(user);
    const dead = await rawStream(port, token, small);
    const connections = async () => ((await (await fetch(`${d.http}/health`)).json()) as { connections: number }).connections;
    expect(await connections()).toBe(1);
    // Alerts for it until what the daemon wrote no longer fits the kernel's buffers.
    const writer = new pg.Client({ connectionString: db });
    await writer.connect();
    const message = 'x'.repeat(2000);
    for (let i = 0; i < 40 && (await connections()) === 1; i++) {
      await writer.query(`INSERT INTO "Alert" ("userId", title, message) SELECT $1, 'n' || g, $2 FROM generate_series(1, 100) g`, [user, message]);
    }
    await writer.end();
    const t0 = Date.now();
    await until(async () => (await connections()) === 0, 10_000, 'the dead stream gone');
    expect(Date.now() - t0).toBeLessThan(3 * heartbeatMs + 2000);
    expect(d.logs.messages()).toContain('terminated an event stream whose heartbeat did not leave (the peer reads nothing)');
    // Its place is free: a new stream of the same user (MAX_CONNECTIONS_PER_USER 1) goes live.
    const next = await rawStream(port, token, false);
    expect(await connections()).toBe(1);
    next.destroy();
    dead.destroy();
  }, 60_000);
});
