/**
 * Malformed requests at a live daemon and the demo server: request lines, targets, headers and
 * WebSocket upgrades that do not parse get an answer (400 or a closed connection), never a
 * crash, and /health answers after each one. Bodies are bounded before they are read.
 */
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MAX_BODY_BYTES } from '../src/server/alerts.js';
import { cleanEnv, launch, type Launched } from './helpers/cli.js';
import { health, SECRET, tokenFor } from './helpers/daemon.js';
import { freshDatabase } from './helpers/pg.js';

let db: string;
let daemonProc: Launched;
let demoProc: ChildProcess;
let daemon: { http: string };
let demo: { port: number; url: string };

// Both run as processes of their own: a throw in a request handler would end the process, and
// the test's /health checks would see it (in the test's own process, the runner would catch it).
beforeAll(async () => {
  db = await freshDatabase(['alice']);
  daemonProc = launch(['start'], cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PORT: '0', HOST: '127.0.0.1' }));
  const m = await daemonProc.waitFor(/pgbell listening on ws:\/\/127\.0\.0\.1:(\d+)/);
  daemon = { http: `http://127.0.0.1:${m[1]}` };
  const script = `
    import { createDb } from ${JSON.stringify(DIST + 'db/connect.js')};
    import { secretKey } from ${JSON.stringify(DIST + 'auth.js')};
    import { startDemoServer } from ${JSON.stringify(DIST + 'demo/server.js')};
    import { pino } from 'pino';
    const s = await startDemoServer({ port: 0, host: '127.0.0.1', db: createDb(process.env.DATABASE_URL), key: secretKey(process.env.SESSION_SECRET),
      wsUrl: 'ws://127.0.0.1:1/', user: { id: 'alice', email: 'alice@example.test' }, psql: 'psql', maxReplay: 100, log: pino({ level: 'silent' }) });
    console.log('demo on ' + s.port);`;
  demoProc = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, env: { ...cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET }) }, stdio: ['ignore', 'pipe', 'inherit'] });
  const demoPort = await new Promise<number>((resolve, reject) => {
    let out = '';
    demoProc.stdout!.on('data', (d) => {
      out += d;
      const hit = /demo on (\d+)/.exec(out);
      if (hit) resolve(Number(hit[1]));
    });
    demoProc.once('exit', (code) => reject(new Error(`the demo server exited (${code})`)));
  });
  demo = { port: demoPort, url: `http://127.0.0.1:${demoPort}/` };
});
afterAll(async () => {
  daemonProc?.child.kill('SIGTERM');
  demoProc?.kill('SIGTERM');
  await daemonProc?.exited;
});

/** Writes raw bytes to a port and returns what came back before the server closed or 2 s passed. */
function raw(port: number, bytes: string | Buffer, waitMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, waitMs);
    sock.on('data', (d) => (got += d.toString('latin1')));
    sock.on('error', done);
    sock.on('close', done);
    sock.write(bytes);
  });
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIST = fileURLToPath(new URL('../dist/', import.meta.url));
const port = (base: string) => Number(new URL(base).port);

const BAD_TARGETS = ['//x:99999/', '//x:99999/alerts', '//x:99999/alerts/stream?token=secret-token', '//[/', 'http://[/', 'http://x:-1/health', '//@:0/', 'http://a b/'];

describe('request targets that do not parse', () => {
  for (const target of BAD_TARGETS) {
    it(`daemon: GET ${target} → 400, and the daemon stays up`, async () => {
      const reply = await raw(port(daemon.http), `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      if (reply) expect(reply).toMatch(/^HTTP\/1\.1 400 /);
      expect((await health(daemon.http)).status).toBe(200);
    });
  }

  for (const target of BAD_TARGETS) {
    it(`daemon: a WebSocket upgrade to ${target} → 400, and the daemon stays up`, async () => {
      const reply = await raw(
        port(daemon.http),
        `GET ${target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
      if (reply) expect(reply).toMatch(/^HTTP\/1\.1 400 /);
      expect((await health(daemon.http)).status).toBe(200);
    });
  }

  it('the demo server answers 400 and stays up', async () => {
    for (const target of BAD_TARGETS) {
      const reply = await raw(demo.port, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      if (reply) expect(reply).toMatch(/^HTTP\/1\.1 400 /);
      expect((await fetch(demo.url)).status).toBe(200);
    }
  });

  it('POST /alerts/read with a Host header that does not make a URL still reaches the handler', async () => {
    const reply = await raw(port(daemon.http), `POST /alerts/read HTTP/1.1\r\nHost: [::bad\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}`);
    expect(reply).toMatch(/^HTTP\/1\.1 (400|401) /);
    expect((await health(daemon.http)).status).toBe(200);
  });
});

describe('fuzz: random request lines, targets, headers and upgrades', () => {
  const junk = fc.string({ unit: fc.constantFrom(...'/:[]@?#%&=.x9 \t\\"<>{}|^`~\u0000\u00ff'.split('')), maxLength: 40 });
  const target = fc.oneof(junk, junk.map((s) => '/' + s), junk.map((s) => '//' + s), junk.map((s) => 'http://' + s), fc.constantFrom(...BAD_TARGETS));
  const method = fc.constantFrom('GET', 'POST', 'HEAD', 'OPTIONS', 'PUT', 'G\u0000T', '');
  const header = fc.tuple(fc.constantFrom('Host', 'Origin', 'Authorization', 'Last-Event-ID', 'Content-Length', 'Upgrade', 'Connection', 'Sec-WebSocket-Key', 'X-Forwarded-For', 'Transfer-Encoding'), junk);
  const request = fc.record({
    method,
    target,
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/9', ''),
    headers: fc.array(header, { maxLength: 5 }),
    upgrade: fc.boolean(),
  });

  it('the daemon and the demo server answer every one and stay up', async () => {
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const upgrade = r.upgrade ? 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' : 'Connection: close\r\n';
        const text = `${r.method} ${r.target} ${r.version}\r\n${r.headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}${upgrade}\r\n`;
        await raw(port(daemon.http), Buffer.from(text, 'latin1'), 300);
        await raw(demo.port, Buffer.from(text, 'latin1'), 300);
        expect((await health(daemon.http)).status).toBe(200);
        expect((await fetch(demo.url)).status).toBe(200);
      }),
      { numRuns: 150, seed: 20261207 },
    );
  }, 120_000);
});

describe('bodies', () => {
  it('a POST without a bearer token gets its 401 without its body being read', async () => {
    const reply = await raw(port(daemon.http), `POST /alerts/read HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 200000000\r\n\r\n{"ids":`);
    expect(reply).toMatch(/^HTTP\/1\.1 401 /);
  });

  it('a body larger than the handler accepts gets 413 and its connection ends, however much more the client would send', async () => {
    const token = await tokenFor('alice');
    const size = 50 * 1024 * 1024;
    const result = await new Promise<{ reply: string; sent: number }>((resolve) => {
      const sock = net.connect(port(daemon.http), '127.0.0.1');
      let reply = '';
      let sent = 0;
      let ended = false;
      const chunk = Buffer.alloc(64 * 1024, 'a');
      sock.on('data', (d) => (reply += d.toString()));
      const finish = () => {
        if (ended) return;
        ended = true;
        sock.destroy();
        resolve({ reply, sent });
      };
      sock.on('close', finish);
      sock.on('error', finish);
      sock.write(`POST /alerts/read HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${size}\r\n\r\n`);
      const pump = () => {
        while (!ended && sent < size) {
          sent += chunk.length;
          if (!sock.write(chunk)) return void sock.once('drain', pump);
        }
      };
      pump();
      setTimeout(finish, 10_000);
    });
    // The 413 is written before the connection ends; a client still sending may see the reset
    // before it reads the answer (unread bytes make the kernel reset), so an empty reply is allowed.
    if (result.reply) expect(result.reply).toMatch(/^HTTP\/1\.1 413 /);
    // The daemon stopped reading long before 50 MB (what the kernel's buffers took aside).
    expect(result.sent).toBeLessThan(size);
    expect(MAX_BODY_BYTES).toBeLessThan(1024 * 1024);
    expect((await health(daemon.http)).status).toBe(200);
  });
});

describe('what a refusal tells the client', () => {
  it('the event stream\'s 401 does not say which check a token failed', async () => {
    const token = await tokenFor('alice', { secret: 'another-secret-0123456789abcdef-xyz' });
    const res = await fetch(`${daemon.http}/alerts/stream`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(401);
    const body = (await res.json()) as { message: string };
    expect(body.message).toBe('Invalid session token');
    expect(body.message).not.toMatch(/SESSION_SECRET|signature/);
  });
});
