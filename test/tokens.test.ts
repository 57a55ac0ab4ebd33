/** Token lifecycle on open sockets: expiry, refresh, leeway, key rotation, revocation from SQL. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secretKey, signSessionToken } from '../src/auth.js';
import { TestClient, sleep } from './helpers/client.js';
import { SECRET, daemonFleet, tokenFor } from './helpers/daemon.js';
import { freshDatabase, psql, query } from './helpers/pg.js';
import { until } from './helpers/tab.js';

let db: string;

beforeAll(async () => {
  db = await freshDatabase(['eve', 'fay', 'gil', 'hal']);
});
afterAll(async () => {
  await fleet.stopAll();
});

const fleet = daemonFleet(() => db);
const daemonWith = fleet.start;

describe('expiry on an open socket', () => {
  it('token_expiring ahead of exp, then 4401 at exp; a fresh auth on the open socket extends it', async () => {
    const d = await daemonWith({ tokenExpiringSeconds: 2, tokenLeewaySeconds: 0 });
    const short = await TestClient.ready(d.url, await tokenFor('eve', { ttlSeconds: 3 }));
    const renewed = await TestClient.ready(d.url, await tokenFor('eve', { ttlSeconds: 3 }));
    const warning = await short.next((m) => m.type === 'token_expiring', 3000);
    expect(warning).toEqual({ type: 'token_expiring', exp: expect.any(Number) });
    expect(warning.exp * 1000 - Date.now()).toBeLessThanOrEqual(2100);

    await renewed.next((m) => m.type === 'token_expiring', 3000);
    renewed.send({ type: 'auth', token: await tokenFor('eve', { ttlSeconds: 3600 }) });
    await renewed.count('ready', 2);

    expect(await short.closed).toEqual({ code: 4401, reason: 'token_expired' });
    expect(short.messages.at(-1)).toMatchObject({ type: 'error', code: 'token_expired' });
    await sleep(300);
    expect(renewed.ws.readyState).toBe(renewed.ws.OPEN);
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('eve', 'after renewal')`);
    expect((await renewed.next((m) => m.type === 'notification')).alert.title).toBe('after renewal');
    renewed.close();
  }, 15_000);

  it('clock-skew leeway: a token that expired 10 s ago is accepted with the default 30 s leeway, refused with none', async () => {
    const lenient = await daemonWith({});
    const strict = await daemonWith({ tokenLeewaySeconds: 0 });
    const token = await tokenFor('fay', { ttlSeconds: -10 });
    const ok = await TestClient.ready(lenient.url, token);
    ok.close();
    const refused = await TestClient.connect(strict.url);
    refused.send({ type: 'auth', token });
    expect((await refused.closed).code).toBe(4401);
  });
});

describe('key rotation', () => {
  it('SESSION_SECRET signs, SESSION_SECRET_PREVIOUS still verifies, anything else is refused', async () => {
    const NEW = 'the-new-session-secret-0123456789abcdef';
    const d = await daemonWith({ sessionSecret: NEW, previousSecrets: [SECRET] });
    const old = await TestClient.ready(d.url, await tokenFor('gil')); // signed with the previous secret
    const fresh = await TestClient.ready(d.url, await signSessionToken(secretKey(NEW), { userId: 'gil', ttlSeconds: 60 }));
    const other = await TestClient.connect(d.url);
    other.send({ type: 'auth', token: await tokenFor('gil', { secret: 'some-other-secret-0123456789abcdefgh' }) });
    expect((await other.closed).code).toBe(4401);
    const res = await fetch(`${d.http}/alerts`, { headers: { authorization: `Bearer ${await tokenFor('gil')}` } });
    expect(res.status).toBe(200);
    old.close();
    fresh.close();
  });
});

describe('revocation from SQL', () => {
  it('an INSERT into pgbell_revocation from psql closes the user\'s sockets at once (4403) and refuses those tokens after; newer tokens work', async () => {
    const d = await daemonWith({});
    const token = await tokenFor('hal');
    const [a, b] = [await TestClient.ready(d.url, token), await TestClient.ready(d.url, token)];
    const bystander = await TestClient.ready(d.url, await tokenFor('gil'));
    await psql(db, `INSERT INTO pgbell.pgbell_revocation ("userId") VALUES ('hal')`);
    for (const c of [a, b]) {
      expect(await c.closed).toEqual({ code: 4403, reason: 'token_revoked' });
      expect(c.messages.at(-1)).toEqual({ type: 'error', code: 'token_revoked', message: 'Session revoked' });
    }
    expect(bystander.ws.readyState).toBe(bystander.ws.OPEN);

    const again = await TestClient.connect(d.url);
    again.send({ type: 'auth', token });
    expect((await again.closed).code).toBe(4403);
    const http = await fetch(`${d.http}/alerts`, { headers: { authorization: `Bearer ${token}` } });
    expect(http.status).toBe(403);
    expect(await http.json()).toEqual({ error: 'token_revoked', message: 'Session revoked; sign in again' });

    // iat has one-second grain; a token from the next second on is newer than the revocation.
    await sleep(1100);
    const newer = await TestClient.ready(d.url, await tokenFor('hal'));
    newer.close();
    bystander.close();
  });

  it('a revocation written with triggers off (no hint at all) refuses those tokens within a heartbeat', async () => {
    const d = await daemonWith({ heartbeatMs: 300 });
    const token = await tokenFor('ivy');
    (await TestClient.ready(d.url, token)).close();
    await psql(db, `SET session_replication_role = replica; INSERT INTO pgbell.pgbell_revocation ("userId") VALUES ('ivy')`);
    await until(async () => {
      const c = await TestClient.connect(d.url);
      c.send({ type: 'auth', token });
      const m = await c.next((x) => x.type === 'ready' || x.type === 'error', 3000);
      c.close();
      return m.type === 'error' && m.code === 'token_revoked';
    }, 5000, 'the token refused');
  });
});
