/**
 * A benchmark client process: holds its share of the sockets and stamps every alert it
 * receives with the system-wide monotonic clock (process.hrtime, CLOCK_MONOTONIC), the same
 * clock the writer stamps with in the parent process. Driven over IPC by test/bench/run.ts.
 */
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import { secretKey, signSessionToken } from '../../src/auth.js';
import { backoffDelay } from '../../src/client/index.js';

export type TargetKind = 'pgbell' | 'relay' | 'socketio' | 'broadcast';

export interface ClientJob {
  kind: TargetKind;
  url: string;
  /** The user of each socket this process holds. */
  users: string[];
  secret: string;
  /** Source addresses to spread the sockets over (127.0.0.x), so no one address runs out of ports. */
  localAddrs: string[];
  /** Sockets connecting at once. */
  concurrency: number;
  /**
   * pgbell only: a socket closed by the server reconnects as pgbell/client does (full-jitter
   * backoff, reset after 10 s live) and resumes from its last cursor.
   */
  reconnect?: boolean;
}

export type ToClient =
  | { type: 'start'; job: ClientJob }
  | { type: 'reset' }
  | { type: 'collect' }
  | { type: 'status' }
  | { type: 'verify'; prefix: string; expected: Record<string, number> }
  | { type: 'close' };
export type FromClient =
  | { type: 'ready'; ms: number; failed: number }
  | { type: 'status'; live: number; total: number; refused: number }
  | { type: 'verified'; lost: number; repeats: number; foreign: number }
  | { type: 'samples'; titles: string[]; at: number[]; received: number; foreign: number; last: number };

const now = () => Number(process.hrtime.bigint());
let titles: string[] = [];
let at: number[] = [];
let received = 0;
let foreign = 0;
let last = 0;
const closers: Array<() => void> = [];

function record(user: string, alerts: Array<{ userId?: string; title: string }>): void {
  const t = now();
  for (const a of alerts) {
    if (a.userId !== undefined && a.userId !== user) foreign++;
    titles.push(a.title);
    at.push(t);
    received++;
  }
  last = t;
}

const tokens = new Map<string, Promise<string>>();
function token(job: ClientJob, user: string): Promise<string> {
  let t = tokens.get(user);
  if (!t) tokens.set(user, (t = signSessionToken(secretKey(job.secret), { userId: user, email: null, ttlSeconds: 6 * 3600 })));
  return t;
}

/** A socket that reconnects (ClientJob.reconnect): its state, for `status` and `verify`. */
interface Resuming {
  user: string;
  live: boolean;
  cursor: string | undefined;
  attempt: number;
  liveSince: number;
  refused: number;
  /** Titles received, over every connection. */
  titles: Set<string>;
  repeats: number;
}
const resuming: Resuming[] = [];
let closing = false;

function openResuming(job: ClientJob, r: Resuming, i: number, first?: { resolve: () => void; reject: (err: Error) => void }): void {
  const ws = new WebSocket(job.url, { localAddress: job.localAddrs[i % job.localAddrs.length], perMessageDeflate: false });
  closers.push(() => ws.terminate());
  const seenHere = new Set<string>();
  ws.on('error', () => {});
  ws.once('open', async () => ws.send(JSON.stringify({ type: 'auth', token: await token(job, r.user), batch: true, ...(r.cursor ? { after: r.cursor } : {}) })));
  ws.on('message', (data) => {
    const m = JSON.parse(String(data));
    if (m.cursor) r.cursor = m.cursor;
    const alerts = m.type === 'notification' ? [m.alert] : m.type === 'notifications' ? m.alerts : [];
    if (alerts.length > 0) record(r.user, alerts);
    for (const a of alerts) {
      if (seenHere.has(a.title)) r.repeats++;
      seenHere.add(a.title);
      r.titles.add(a.title);
    }
    if (m.type === 'synced') {
      r.live = true;
      r.liveSince = Date.now();
      first?.resolve();
      first = undefined;
    }
  });
  ws.on('close', (code) => {
    r.live = false;
    if (closing) return;
    if (code === 1013) r.refused++;
    if (r.liveSince > 0 && Date.now() - r.liveSince >= 10_000) r.attempt = 0;
    setTimeout(() => openResuming(job, r, i, first), backoffDelay(r.attempt++));
  });
}

function connectOne(job: ClientJob, user: string, i: number): Promise<void> {
  if (job.kind === 'pgbell' && job.reconnect) {
    const r: Resuming = { user, live: false, cursor: undefined, attempt: 0, liveSince: 0, refused: 0, titles: new Set(), repeats: 0 };
    resuming.push(r);
    return new Promise((resolve, reject) => openResuming(job, r, i, { resolve, reject }));
  }
  const localAddress = job.localAddrs[i % job.localAddrs.length];
  if (job.kind === 'socketio') {
    return new Promise((resolve, reject) => {
      const s: Socket = io(job.url, { transports: ['websocket'], query: { user }, forceNew: true, reconnection: false, localAddress } as never);
      s.on('alert', (row: { userId: string; title: string }) => record(user, [row]));
      s.once('connect', () => resolve());
      s.once('connect_error', reject);
      closers.push(() => s.close());
    });
  }
  return new Promise((resolve, reject) => {
    const url = job.kind === 'pgbell' ? job.url : `${job.url}?user=${encodeURIComponent(user)}`;
    const ws = new WebSocket(url, { localAddress, perMessageDeflate: false });
    closers.push(() => ws.terminate());
    ws.once('error', reject);
    ws.on('close', (code) => reject(new Error(`closed ${code}`)));
    if (job.kind !== 'pgbell') {
      ws.once('open', () => resolve());
      ws.on('message', (data) => record(user, [JSON.parse(String(data))]));
      return;
    }
    ws.once('open', async () => ws.send(JSON.stringify({ type: 'auth', token: await token(job, user), batch: true })));
    ws.on('message', (data) => {
      const m = JSON.parse(String(data));
      if (m.type === 'notification') record(user, [m.alert]);
      else if (m.type === 'notifications') record(user, m.alerts);
      else if (m.type === 'synced') resolve();
      else if (m.type === 'error') reject(new Error(`${m.code}: ${m.message}`));
    });
  });
}

async function start(job: ClientJob): Promise<FromClient> {
  const t0 = performance.now();
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < job.users.length) {
      const i = next++;
      // A refused socket (1013 while the server is busy) is retried, like a real client would.
      for (let attempt = 0; ; attempt++) {
        try {
          await connectOne(job, job.users[i]!, i);
          break;
        } catch {
          if (attempt >= 20) {
            failed++;
            break;
          }
          await new Promise((r) => setTimeout(r, 50 * (attempt + 1)));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, worker));
  return { type: 'ready', ms: performance.now() - t0, failed };
}

process.on('message', async (msg: ToClient) => {
  if (msg.type === 'start') process.send!(await start(msg.job));
  else if (msg.type === 'reset') {
    titles = [];
    at = [];
    received = 0;
    foreign = 0;
    last = 0;
  } else if (msg.type === 'collect') process.send!({ type: 'samples', titles, at, received, foreign, last } satisfies FromClient);
  else if (msg.type === 'status') {
    process.send!({ type: 'status', live: resuming.filter((r) => r.live).length, total: resuming.length, refused: resuming.reduce((n, r) => n + r.refused, 0) } satisfies FromClient);
  } else if (msg.type === 'verify') {
    // Every socket must hold every alert of its user whose title has the prefix, and no other.
    let lost = 0;
    let strangers = 0;
    for (const r of resuming) {
      const mine = [...r.titles].filter((t) => t.startsWith(msg.prefix));
      const ofUser = mine.filter((t) => t.startsWith(`${msg.prefix}${r.user}-`));
      strangers += mine.length - ofUser.length;
      lost += Math.max(0, (msg.expected[r.user] ?? 0) - ofUser.length);
    }
    process.send!({ type: 'verified', lost, repeats: resuming.reduce((n, r) => n + r.repeats, 0), foreign: strangers } satisfies FromClient);
  } else if (msg.type === 'close') {
    closing = true;
    for (const c of closers) c();
    process.exit(0);
  }
});
