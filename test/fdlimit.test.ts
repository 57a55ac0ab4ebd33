/**
 * A daemon under a low open-file limit (512 here: below about 300, Node cannot even load pgbell)
 * holds the sockets it can and refuses the rest with 1013, keeping files for its own Postgres
 * connections. Without the cap it ran into EMFILE: the sockets beyond were reset with no close
 * code. A burst beyond the cap all at once is accepted before any request is read: past half the
 * reserve Node closes each as it accepts it (a reset), and the daemon still serves.
 */
import { spawn } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';
import { acceptAllowed, openFileLimit, reservedFiles, socketsAllowed } from '../src/util/fdlimit.js';
import { BIN, cleanEnv } from './helpers/cli.js';
import { TestClient, type Closed } from './helpers/client.js';
import { SECRET, tokenFor } from './helpers/daemon.js';
import { createUser, freshDatabase, query } from './helpers/pg.js';

const LIMIT = 512;
const SOCKETS = 500;
const children: Array<ReturnType<typeof spawn>> = [];
afterAll(() => children.forEach((c) => c.exitCode === null && c.signalCode === null && c.kill('SIGKILL')));

it('reads the soft limit of this process, and keeps a reserve of a twentieth within 64–1,000', () => {
  expect(openFileLimit()).toBeGreaterThan(0);
  expect(openFileLimit('/nonexistent')).toBeNull();
  expect([reservedFiles(256), reservedFiles(20_000), reservedFiles(1_000_000)]).toEqual([64, 1000, 1000]);
  expect(socketsAllowed(20_000)).toBe(19_000);
  expect(socketsAllowed(null)).toBeNull();
  expect([acceptAllowed(512), acceptAllowed(20_000), acceptAllowed(null)]).toEqual([480, 19_500, null]);
});

it(`under an open-file limit of ${LIMIT}, sockets beyond what it can hold get 1013, and the held ones still get their alerts`, async () => {
  const db = await freshDatabase();
  const child = spawn('prlimit', [`--nofile=${LIMIT}:${LIMIT}`, process.execPath, BIN, 'start'], {
    env: cleanEnv({ DATABASE_URL: db, SESSION_SECRET: SECRET, PORT: '0', HOST: '127.0.0.1', LOG_FORMAT: 'json', MAX_UNAUTHENTICATED_PER_ADDRESS: '0', ADDRESS_RATE_LIMIT: '0', RATE_LIMIT: '100000' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const port = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start within 60 s:\n${out}`)), 60_000);
    child.once('exit', (code) => (clearTimeout(timer), reject(new Error(`exited (${code}) before it listened:\n${out}`))));
    child.stdout!.on('data', () => {
      const m = /pgbell listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) (clearTimeout(timer), resolve(m[1]!));
    });
  });
  const url = `ws://127.0.0.1:${port}/`;
  expect(out).toMatch(new RegExp(`open-file limit \\(${LIMIT}\\) can hold: at most ${socketsAllowed(LIMIT)} sockets`));

  const open = async (user: string): Promise<{ c: TestClient; user: string } | Closed | string> => {
    try {
      const c = await TestClient.connect(url);
      c.send({ type: 'auth', token: await tokenFor(user) });
      const first = await Promise.race([c.next((m) => m.type === 'synced', 15_000).then(() => 'synced' as const), c.closed]);
      return first === 'synced' ? { c, user } : first;
    } catch (err) {
      return (err as Error).message;
    }
  };
  // In batches, each socket authenticated or refused before the next batch.
  const held: Array<{ c: TestClient; user: string }> = [];
  const refused: Closed[] = [];
  const other: string[] = [];
  const sort = (r: Awaited<ReturnType<typeof open>>) => (typeof r === 'string' ? other.push(r) : 'code' in r ? refused.push(r) : held.push(r));
  for (let i = 0; i < SOCKETS; i += 20) (await Promise.all(Array.from({ length: Math.min(20, SOCKETS - i) }, (_, j) => open(`u${i + j}`)))).forEach(sort);
  expect(other).toEqual([]);
  expect(held.length).toBe(socketsAllowed(LIMIT));
  expect(refused.map((r) => r.code)).toEqual(Array(SOCKETS - held.length).fill(1013));

  // A burst of 200 at once: each refused (1013 up to the accept limit, a reset beyond), none held, none left hanging.
  refused.length = 0;
  const burst = await Promise.all(Array.from({ length: 200 }, (_, j) => open(`b${j}`)));
  expect(burst.filter((r) => typeof r !== 'string' && 'c' in r)).toHaveLength(0);
  expect(burst.filter((r) => typeof r !== 'string' && 'code' in r && r.code !== 1013)).toEqual([]);

  // The daemon still opens what it needs: an alert to a held socket's user arrives, and sockets
  // that take the place of closed ones sync (a read from Postgres each).
  const last = held.at(-1)!;
  await createUser(db, last.user);
  await query(db, `INSERT INTO "Alert" ("userId", title) VALUES ($1, 'still here')`, [last.user]);
  const got = await last.c.next((m) => m.type === 'notification', 10_000);
  expect(got.alert.title).toBe('still here');
  for (const h of held.splice(0, 40)) {
    h.c.close();
    await h.c.closed;
  }
  const again = await Promise.all(Array.from({ length: 40 }, (_, j) => open(`again${j}`)));
  expect(again.filter((r) => typeof r === 'string' || 'code' in r)).toEqual([]);
  held.push(...(again as Array<{ c: TestClient; user: string }>));
  const health = await fetch(`http://127.0.0.1:${port}/health`);
  expect(health.status).toBe(200);

  for (const h of held) h.c.close();
  child.kill('SIGTERM');
}, 120_000);
