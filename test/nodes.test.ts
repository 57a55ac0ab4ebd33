/**
 * Several daemons on one Postgres, no sticky sessions: each node LISTENs and delivers to the
 * sockets it holds; a client can resume on any node.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDaemon, tokenFor, type TestDaemon } from './helpers/daemon.js';
import { freshDatabase, query } from './helpers/pg.js';
import { Tab, until } from './helpers/tab.js';

let db: string;
let nodes: TestDaemon[] = [];

beforeAll(async () => {
  db = await freshDatabase(['ola', 'pip']);
  nodes = await Promise.all([1, 2, 3].map(() => startTestDaemon(db)));
});
afterAll(async () => {
  for (const n of nodes) await n.stop();
});

describe('three nodes', () => {
  it('tabs of one user spread over three nodes each get each alert once; a killed node\'s tabs resume on another with nothing lost', async () => {
    const tabs = await Promise.all(nodes.flatMap((n) => [0, 1].map(async () => new Tab(await tokenFor('ola')).connect(n.url))));
    const bystander = await new Tab(await tokenFor('pip')).connect(nodes[0]!.url);
    const listeners = await query(db, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgbell-listener' AND datname = current_database()`);
    expect(listeners[0]!.n).toBe(3);

    const write = (n: number, tag: string) => query(db, `INSERT INTO "Alert" ("userId", title) SELECT 'ola', $1 || g FROM generate_series(1, $2::int) g`, [tag, n]);
    await write(20, 'before ');
    await until(() => tabs.every((t) => t.ids.size === 20), 10_000, '20 on every tab');

    // Node 2 goes away mid-stream; its tabs move to node 3 with their cursors.
    const doomed = nodes[1]!;
    const moved = tabs.slice(2, 4);
    const writing = write(30, 'during ');
    await doomed.stop();
    nodes = nodes.filter((n) => n !== doomed);
    await writing;
    await Promise.all(moved.map((t) => t.connect(nodes[1]!.url)));
    await write(10, 'after ');

    const truth = new Set((await query(db, `SELECT id FROM "Alert" WHERE "userId" = 'ola'`)).map((r) => r.id));
    expect(truth.size).toBe(60);
    for (const t of tabs) {
      await until(() => t.ids.size === 60, 10_000, `60 on a tab (have ${t.ids.size})`);
      expect(t.ids).toEqual(truth);
      expect(t.repeatsWithinConnection).toEqual([]);
      t.close();
    }
    expect(bystander.ids.size).toBe(0);
    bystander.close();
  });
});
