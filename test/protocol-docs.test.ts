/**
 * docs/protocol/ is generated from src/protocol.ts and must not go stale; and what a real
 * daemon sends matches the schema it documents.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServerMessage } from '../src/protocol.js';
import { TestClient } from './helpers/client.js';
import { startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { protocolDocuments } from './protocol-docs.js';

let db: string;
let daemon: TestDaemon;
beforeAll(async () => {
  db = await freshDatabase(['pd']);
  daemon = await startTestDaemon(db, { tokenExpiringSeconds: 3600 });
});
afterAll(async () => {
  await daemon?.stop();
});

describe('docs/protocol', () => {
  it('is what `npm run protocol` generates from the zod definitions (run it after changing src/protocol.ts)', async () => {
    for (const [file, text] of Object.entries(protocolDocuments())) {
      expect(await readFile(new URL(`../${file}`, import.meta.url), 'utf8'), `${file} is stale: run npm run protocol`).toBe(text);
    }
  });

  it('every kind of message a real daemon sends validates against the server schema', async () => {
    const token = await tokenFor('pd');
    const a = await TestClient.ready(daemon.url, token);
    const b = await TestClient.connect(daemon.url);
    b.send({ type: 'auth', token, batch: true });
    await b.next((m) => m.type === 'synced');
    await query(db, `INSERT INTO "Alert" ("userId", type, title, data) VALUES ('pd', 'x', 'one', '{"k":[1,2]}'), ('pd', 'x', 'two', NULL)`);
    await b.next((m) => m.type === 'notifications');
    await query(db, `UPDATE "Alert" SET read = true WHERE title = 'one'`);
    await query(db, `DELETE FROM "Alert" WHERE title = 'two'`);
    await a.next((m) => m.type === 'delete');
    a.send({ type: 'subscribe', types: ['x'] });
    a.send({ type: 'ping' });
    a.send({ type: 'nonsense' });
    await a.next((m) => m.type === 'error');
    await a.next((m) => m.type === 'pong');
    await a.next((m) => m.type === 'subscribed');
    const c = await TestClient.connect(daemon.url);
    c.send({ type: 'auth', token, after: 'not-a-cursor' });
    await c.next((m) => m.type === 'synced');
    await a.next((m) => m.type === 'token_expiring');
    const all = [...a.messages, ...b.messages, ...c.messages];
    const kinds = new Set(all.map((m) => m.type));
    expect([...kinds].sort()).toEqual(['delete', 'error', 'notification', 'notifications', 'pong', 'ready', 'reset', 'subscribed', 'synced', 'token_expiring', 'update']);
    for (const m of all) expect(ServerMessage.safeParse(m).error?.issues ?? [], JSON.stringify(m)).toEqual([]);
    for (const t of [a, b, c]) t.close();
  });
});
