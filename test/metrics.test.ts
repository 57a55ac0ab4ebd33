/** GET /metrics: Prometheus text with what an operator watches. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from './helpers/client.js';
import { startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';

let db: string;
let daemon: TestDaemon;

beforeAll(async () => {
  db = await freshDatabase(['mo']);
  daemon = await startTestDaemon(db);
});
afterAll(async () => {
  await daemon?.stop();
});

const metric = (text: string, name: string) => {
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{') && l.split(' ')[0] === name);
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
};

describe('/metrics', () => {
  it('counts connections, users, deliveries, latency, auth failures and the NOTIFY queue', async () => {
    const a = await TestClient.ready(daemon.url, await tokenFor('mo'));
    const b = await TestClient.ready(daemon.url, await tokenFor('mo'));
    const bad = await TestClient.connect(daemon.url);
    bad.send({ type: 'auth', token: 'nope' });
    await bad.closed;
    await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ('mo', 'one'), ('mo', 'two')`);
    await a.count('notification', 2);
    await b.count('notification', 2);

    const res = await fetch(`${daemon.http}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(metric(text, 'pgbell_connections')).toBe(2);
    expect(metric(text, 'pgbell_users')).toBe(1);
    expect(metric(text, 'pgbell_delivered_total{kind="notification"}')).toBe(4);
    expect(metric(text, 'pgbell_auth_failures_total{reason="invalid_token"}')).toBe(1);
    expect(metric(text, 'pgbell_delivery_seconds_count')).toBeGreaterThanOrEqual(1);
    // The insert's read, timed apart from the rest of the delivery.
    expect(metric(text, 'pgbell_live_read_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(metric(text, 'pgbell_live_read_seconds_sum')).toBeGreaterThan(0);
    // The NOTIFY queue is the cluster's: on a server shared with other databases' listeners (the
    // machine's Postgres while other test files run) a page of it may be unread for a moment.
    expect(metric(text, 'pgbell_notify_queue_usage')).toBeGreaterThanOrEqual(0);
    expect(metric(text, 'pgbell_notify_queue_usage')).toBeLessThan(0.001);
    expect(metric(text, 'pgbell_listener_reconnects')).toBe(0);
    expect(text).toContain('pgbell_process_resident_memory_bytes');
    a.close();
    b.close();
  });
});
