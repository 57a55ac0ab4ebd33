/**
 * The hub's share of a reconnect storm: S sockets of S users join one at a time (each syncs,
 * then is live) while live reads keep asking how many users are live (what Delivery asks
 * before each live read to choose between reading for the live users and reading for all),
 * one read per `--joins-per-read` joins. Prints the time the hub spent.
 *
 *   npx tsx test/bench/hub-joins.ts [--sockets 10000] [--joins-per-read 10]
 */
import { parseArgs } from 'node:util';
import { CursorState } from '../../src/delivery/cursor.js';
import { Hub, Subscriber } from '../../src/delivery/hub.js';
import type { Socket } from '../../src/delivery/socket.js';

const { values } = parseArgs({ options: { sockets: { type: 'string', default: '10000' }, 'joins-per-read': { type: 'string', default: '10' } } });
const S = Number(values.sockets);
const PER = Number(values['joins-per-read']);
// A socket that is never written to here: the hub only keeps it.
const quiet: Socket = { OPEN: 1, readyState: 1, bufferedAmount: 0, send() {}, close() {}, terminate() {}, ping() {} };

function run(ask: (hub: Hub) => number): number {
  const hub = new Hub();
  let sink = 0;
  const t0 = performance.now();
  for (let i = 0; i < S; i++) {
    const sub = new Subscriber(quiet, `u${i}`, null, null);
    hub.add(sub);
    sub.stash = [];
    if (i % PER === 0) sink += ask(hub);
    sub.cursor = new CursorState(0n, []);
    sub.stash = null;
  }
  const ms = performance.now() - t0;
  if (sink < 0) console.log(sink);
  return ms;
}

// Warm up, then the figure: the list's length (what Delivery asked before) and the count.
run((h) => h.liveUserIds().length);
const list = Math.min(...[0, 1, 2].map(() => run((h) => h.liveUserIds().length)));
const count = 'liveUserCount' in Hub.prototype ? Math.min(...[0, 1, 2].map(() => run((h) => h.liveUserCount))) : NaN;
console.log(`${S} sockets joining, a live read every ${PER} joins: liveUserIds().length ${list.toFixed(1)} ms; liveUserCount ${count.toFixed(1)} ms`);
