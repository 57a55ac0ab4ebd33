/**
 * One reader per machine (`pgbell start --workers N`, src/daemon/workers.ts): the primary
 * process runs the one change source and the live read, and hands what it read to every worker
 * over IPC; a worker's delivery then reads nothing live of its own. Both ends are here, with the
 * wire between them, because they must agree on it exactly:
 *
 *   Forwarder        (primary) hears the source, reads each live step's transactions once for
 *                    every user (liveBatch with 'all', the counts included) and sends steps,
 *                    horizons, 'resumed' and 'revoke' in the order the source emitted them;
 *   ForwardedSource  (worker) a ChangeSource that emits those again: 'txid' with its changes and
 *                    their counts (see `counted` in types.ts), so delivery skips every read.
 *
 * Order is the guarantee: a horizon says "every transaction below was announced before", so it
 * must reach a worker after the transactions sent before it. Every message goes on the worker's
 * one IPC channel in the order of one chain here; reads overlap, sends do not.
 *
 * A worker that starts (or is started again) after steps went out missed them, and needs none
 * of them: it subscribes before it takes any socket, and each of its sockets first syncs from its
 * cursor with a read that began after the missed steps were read (so after they committed): the
 * same as a source that just resumed with nobody connected.
 *
 * IPC carries JSON: bigints travel as decimal strings, and alerts as their wire form (createdAt
 * is already an ISO string there).
 */
import { EventEmitter } from 'node:events';
import { liveBatch, type Change, type ChangeBatch, type Counted, type UnreadByType } from '../db/changes.js';
import type { Db } from '../db/connect.js';
import type { Logger } from '../log.js';
import type { WireAlert } from '../protocol.js';
import { retry } from '../util/retry.js';
import type { ChangeSource, SourceEvents, SourceState } from './types.js';

/** A change on the wire: bigints as strings. */
export type WireChange =
  | { k: 'a'; t: string; i: string; s: string; a: WireAlert; r?: 1 }
  | { k: 'd'; t: string; id: string; u: string; o?: 1 }
  | { k: 'p'; t: string; u: string; m: string[] };

/** A transaction (with its changes and their users' counts) or a horizon. */
export type WireEntry = { x: string; m: string | null; c: WireChange[]; n: Array<[string, UnreadByType]>; mu: Array<[string, string[]]> } | { h: string };

export interface SourceStatus {
  state: SourceState;
  deaf: boolean;
  status: { state: SourceState; reconnects: number; [k: string]: unknown };
}

/** What the primary sends a worker about changes (the `pgbell:` prefix keeps them apart from other IPC). */
export type ForwardedMessage =
  | { pgbell: 'step'; e: WireEntry[] }
  | { pgbell: 'resumed' }
  | { pgbell: 'revoke'; u: string; b: number }
  | { pgbell: 'status'; s: SourceStatus };

export function encodeChange(c: Change): WireChange {
  switch (c.kind) {
    case 'alert':
      return { k: 'a', t: c.txid.toString(), i: c.insertTxid.toString(), s: c.seq.toString(), a: c.alert, ...(c.replaced ? { r: 1 as const } : {}) };
    case 'delete':
      return { k: 'd', t: c.txid.toString(), id: c.id, u: c.userId, ...(c.outlived ? { o: 1 as const } : {}) };
    case 'preferences':
      return { k: 'p', t: c.txid.toString(), u: c.userId, m: c.muted };
  }
}

export function decodeChange(w: WireChange): Change {
  switch (w.k) {
    case 'a':
      return { kind: 'alert', txid: BigInt(w.t), insertTxid: BigInt(w.i), seq: BigInt(w.s), alert: w.a, ...(w.r ? { replaced: true as const } : {}) };
    case 'd':
      return { kind: 'delete', txid: BigInt(w.t), id: w.id, userId: w.u, ...(w.o ? { outlived: true as const } : {}) };
    case 'p':
      return { kind: 'preferences', txid: BigInt(w.t), userId: w.u, muted: w.m };
  }
}

const userOf = (c: Change): string => (c.kind === 'alert' ? c.alert.userId : c.userId);

/** The entries of one live step, read: each transaction with its own changes and the counts of their users. */
export function encodeStep(entries: ReadonlyArray<{ txid: string | null; xmin: bigint | null }>, batch: ChangeBatch | undefined): WireEntry[] {
  const byTx = new Map<bigint, Change[]>();
  for (const c of batch?.changes ?? []) {
    const group = byTx.get(c.txid);
    if (group) group.push(c);
    else byTx.set(c.txid, [c]);
  }
  const out: WireEntry[] = [];
  const sent = new Set<bigint>();
  for (const { txid, xmin } of entries) {
    if (txid === null) {
      out.push({ h: xmin!.toString() });
      continue;
    }
    const tx = BigInt(txid);
    // A transaction notified twice is sent once, with its changes; its xmin (the poller's) still counts.
    const changes = sent.has(tx) ? [] : (byTx.get(tx) ?? []);
    sent.add(tx);
    const users = new Set(changes.map(userOf));
    out.push({
      x: txid,
      m: xmin === null ? null : xmin.toString(),
      c: changes.map(encodeChange),
      n: [...users].flatMap((u): Array<[string, UnreadByType]> => (batch?.unread.has(u) ? [[u, batch.unread.get(u)!]] : [])),
      mu: [...users].flatMap((u): Array<[string, string[]]> => (batch?.muted?.has(u) ? [[u, batch.muted.get(u)!]] : [])),
    });
  }
  return out;
}

interface Pending {
  txid: string | null;
  xmin: bigint | null;
  carried?: Change[] | null | undefined;
}

export interface ForwarderOptions {
  db: Db;
  source: ChangeSource;
  log: Logger;
  /** Sends one message to every worker subscribed now, in call order. */
  send: (msg: ForwardedMessage) => void;
  /** Observes a live read's time (seconds). */
  liveRead?: (seconds: number) => void;
}

/** The primary's side: the machine's one live read. */
export class Forwarder {
  #pending: Pending[] = [];
  #scheduled = false;
  #chain: Promise<void> = Promise.resolve();
  #stopping = false;
  #lastStatus = '';
  readonly #timer: NodeJS.Timeout;
  readonly #o: ForwarderOptions;

  constructor(o: ForwarderOptions) {
    this.#o = o;
    const { source } = o;
    source.on('txid', (txid, xmin, carried) => this.#add({ txid, xmin, carried }));
    source.on('horizon', (xmin) => this.#add({ txid: null, xmin }));
    source.on('resumed', () => {
      this.#flush();
      this.#then(() => {
        this.#sendStatus(true);
        o.send({ pgbell: 'resumed' });
      });
    });
    source.on('revoke', (userId, before) => {
      this.#flush();
      this.#then(() => o.send({ pgbell: 'revoke', u: userId, b: before }));
    });
    // Workers mirror the source's state (revocations are trusted only while it is connected).
    this.#timer = setInterval(() => this.#then(() => this.#sendStatus(false)), 200);
    this.#timer.unref();
  }

  /** The source's state now, as a worker's ForwardedSource shows it. */
  status(): SourceStatus {
    const { source } = this.#o;
    return { state: source.state, deaf: source.deaf, status: source.status() };
  }

  #sendStatus(always: boolean): void {
    const s = this.status();
    const text = JSON.stringify(s);
    if (!always && text === this.#lastStatus) return;
    this.#lastStatus = text;
    this.#o.send({ pgbell: 'status', s });
  }

  #add(p: Pending): void {
    this.#pending.push(p);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.#flush());
  }

  #then(step: () => void | Promise<void>): void {
    this.#chain = this.#chain.then(step).catch((err) => this.#o.log.error({ err }, 'forwarding to workers failed'));
  }

  #flush(): void {
    this.#scheduled = false;
    const step = this.#pending;
    this.#pending = [];
    if (step.length === 0) return;
    // Reads overlap; what they read is sent in order.
    const read = this.#read(step);
    this.#then(async () => this.#o.send({ pgbell: 'step', e: encodeStep(step, await read) }));
  }

  #read(step: Pending[]): Promise<ChangeBatch | undefined> {
    if (!step.some((p) => p.txid !== null)) return Promise.resolve(undefined);
    const started = performance.now();
    const read = retry('reading alerts', () => liveBatch(this.#o.db, step, 'all'), { log: this.#o.log, stopped: () => this.#stopping, giveUpOnBadInput: true });
    const { liveRead } = this.#o;
    if (liveRead && step.some((p) => p.txid !== null && !p.carried)) void read.then(() => liveRead((performance.now() - started) / 1000));
    return read;
  }

  /** Sends what was heard so far, then resolves. */
  async drain(): Promise<void> {
    this.#flush();
    await this.#chain;
  }

  /** Sends what was heard so far, then stops: a read that keeps failing is given up, not retried for ever (as Delivery.abandon does). */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#stopping = true;
    await this.drain();
  }
}

/** The worker's side: a source fed by the primary's Forwarder. */
export class ForwardedSource extends EventEmitter<SourceEvents> implements ChangeSource {
  #s: SourceStatus = { state: 'connecting', deaf: false, status: { state: 'connecting', reconnects: 0 } };

  get state(): SourceState {
    return this.#s.state;
  }

  get deaf(): boolean {
    return this.#s.deaf;
  }

  status(): SourceStatus['status'] {
    return { ...this.#s.status, forwarded: true };
  }

  /** The primary probes its source; here, whether it last said the source works. */
  async probe(): Promise<boolean> {
    return this.#s.state === 'connected' && !this.#s.deaf;
  }

  async start(): Promise<void> {}

  async close(): Promise<void> {
    this.#s = { ...this.#s, state: 'closed' };
  }

  /** A message from the primary (see ForwardedMessage). */
  receive(msg: ForwardedMessage): void {
    switch (msg.pgbell) {
      case 'status':
        this.#s = msg.s;
        return;
      case 'resumed':
        this.emit('resumed');
        return;
      case 'revoke':
        this.emit('revoke', msg.u, msg.b);
        return;
      case 'step':
        for (const e of msg.e) {
          if ('h' in e) this.emit('horizon', BigInt(e.h));
          else {
            const counted: Counted = { unread: new Map(e.n), muted: new Map(e.mu) };
            this.emit('txid', e.x, e.m === null ? null : BigInt(e.m), e.c.map(decodeChange), counted);
          }
        }
    }
  }
}
