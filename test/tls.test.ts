/** TLS_CERT / TLS_KEY: the daemon serves wss:// and https:// itself, with a certificate made here. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { loadConfig } from '../src/config.js';
import { startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';

let dir: string;
let cert: Buffer;
let daemon: TestDaemon;
let db: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgbell-tls-'));
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
  ]);
  cert = await readFile(path.join(dir, 'cert.pem'));
  db = await freshDatabase(['tia']);
  daemon = await startTestDaemon(db, { tls: { certFile: path.join(dir, 'cert.pem'), keyFile: path.join(dir, 'key.pem') } });
});
afterAll(async () => {
  await daemon?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('TLS', () => {
  it('wss:// carries auth and alerts; https:// serves /health; the certificate is the one configured', async () => {
    expect(daemon.url).toMatch(/^wss:\/\//);
    const ws = new WebSocket(daemon.url, { ca: cert });
    const got: any[] = [];
    ws.on('message', (d) => got.push(JSON.parse(String(d))));
    await new Promise<void>((r, j) => (ws.once('open', () => r()), ws.once('error', j)));
    ws.send(JSON.stringify({ type: 'auth', token: await tokenFor('tia') }));
    const until = async (pred: () => boolean) => {
      for (let i = 0; i < 250 && !pred(); i++) await new Promise((r) => setTimeout(r, 20));
      expect(pred()).toBe(true);
    };
    await until(() => got.some((m) => m.type === 'synced'));
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('tia', 'over TLS')`);
    await until(() => got.some((m) => m.type === 'notification'));
    expect(got.find((m) => m.type === 'notification').alert.title).toBe('over TLS');
    ws.close();

    const health = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      https.get(`https://127.0.0.1:${daemon.port}/health`, { ca: cert }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      }).on('error', reject);
    });
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body).status).toBe('ok');
  });

  it('a plain ws:// client cannot talk to it; a client that does not trust the certificate is refused', async () => {
    const plain = new WebSocket(daemon.url.replace('wss:', 'ws:'));
    await expect(new Promise((r, j) => (plain.once('open', r), plain.once('error', j)))).rejects.toThrow();
    const untrusting = new WebSocket(daemon.url);
    await expect(new Promise((r, j) => (untrusting.once('open', r), untrusting.once('error', j)))).rejects.toThrow(/self.signed|certificate/i);
  });

  it('TLS_CERT without TLS_KEY is a one-line config error', () => {
    expect(() => loadConfig({ TLS_CERT: '/x/cert.pem' })).toThrow('TLS_KEY is required when TLS_CERT is set');
  });
});
