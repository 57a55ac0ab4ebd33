/**
 * The dedicated LISTEN connection. pg-listen owns the socket; this module adds what pgbell
 * needs on top: it never stops reconnecting (pg-listen's default gives up after 3 s), it is
 * findable in pg_stat_activity as `pgbell-listener`, it reports its state for /health, and
 * it turns raw payloads into transaction ids (garbage is logged and dropped).
 */
import { EventEmitter } from 'node:events';
import { sql } from 'kysely';
import pgListen, { type Subscriber } from 'pg-listen';
import { z } from 'zod';
import type { Logger } from '../log.js';
import { Probes } from './probes.js';
import type { SourceEvents, SourceState } from './types.js';

// pg-listen is CommonJS with an `exports.default`; Node's ESM interop hands us the exports object.
const createSubscriber = pgListen.default;

export const LISTENER_APPLICATION_NAME = 'pgbell-listener';

export type ListenerState = SourceState;
/** The events every source emits (see src/sources/index.ts). */
export type ListenerEvents = SourceEvents;

/** A decimal transaction id within xid8's range (a larger one would fail every read that casts it). */
const xid8 = z.string().refine((v) => /^\d{1,20}$/.test(v) && BigInt(v) < 1n << 64n, 'not a transaction id');

/**
 * What the trigger sends: the writer's transaction id (and its snapshot horizon, which is not
 * used: any role can send this payload, so it is only a hint of which transaction to read).
 */
const Payload = z.object({ txid: xid8, xmin: z.string().optional() });
/**
 * What the revocation trigger sends: a user id and "tokens issued before" (epoch seconds). A
 * hint too: the daemon checks pgbell_revocation before closing anyone.
 */
const Revocation = z.object({ revoke: z.string().min(1).max(1000), before: z.string().regex(/^\d{1,15}$/) });
/**
 * A probe this daemon sent itself (see probe()): its nonce, and the snapshot horizon of the
 * statement that sent it. Every transaction below that horizon had finished before the probe
 * was sent, so its notification came first: once the probe arrives, those transactions have
 * all been seen, and cursors may move up to it. Only a nonce this listener is waiting for
 * counts, and only once, so a forged or replayed probe moves nothing.
 */
const Probe = z.object({ probe: z.string().min(1).max(100), xmin: xid8.optional() });


export interface ListenerOptions {
  connectionString: string;
  channel: string;
  log: Logger;
  /**
   * Half-open connections are detected within this: the connection is checked every half of it
   * with a trivial query (pg-listen's paranoid check) that times out after the other half.
   */
  checkIntervalMs: number;
  /**
   * Sends `{"probe":<nonce>,"xmin":<its snapshot horizon>}` on the channel through another
   * connection, the horizon computed by the same statement (see probeStatement).
   */
  notify: (nonce: string) => Promise<void>;
  /** How often a probe is sent while notifications arrive, to move the horizon (default 250 ms). */
  fenceMs?: number;
}

/** How long close() waits for the connection to end. */
const CLOSE_WAIT_MS = 2000;

/** Reconnect delay: exponential with full jitter, 100 ms base, 5 s cap. */
export function retryDelay(attempt: number): number {
  return Math.random() * Math.min(5000, 100 * 2 ** Math.min(attempt, 10));
}

export class Listener extends EventEmitter<ListenerEvents> {
  #state: ListenerState = 'connecting';
  #since = new Date();
  #reconnects = 0;
  #listening = false;
  /** Notifications that arrive on a new connection before it is reported as resumed. */
  #early: Array<string | undefined> = [];
  /** Probes in flight: nonce → resolve. */
  readonly #probes = new Probes();
  /** A transaction was announced since the last fence: the horizon has somewhere to go. */
  #dirty = false;
  #fencing = false;
  #fenceTimer: NodeJS.Timeout | undefined;
  #probe: { ok: boolean | null; at: string | null } = { ok: null, at: null };
  readonly #sub: Subscriber;
  readonly #opts: ListenerOptions;

  constructor(opts: ListenerOptions) {
    super();
    this.#opts = opts;
    this.#sub = createSubscriber(
      {
        connectionString: opts.connectionString,
        application_name: LISTENER_APPLICATION_NAME,
        keepAlive: true,
        // Start TCP keepalive probes after 10 s idle instead of the OS default of 2 hours.
        keepAliveInitialDelayMillis: 10_000,
        // A check query on a half-open connection would otherwise wait for TCP to give up
        // (minutes); failing it makes pg-listen reconnect.
        query_timeout: Math.max(250, Math.floor(opts.checkIntervalMs / 2)),
      },
      {
        retryLimit: Infinity,
        retryTimeout: Infinity,
        // pg-listen's reconnect loop does not look at close(): a listener closed while it
        // reconnects would keep trying for ever, and connect again. Throwing here ends the loop.
        retryInterval: (attempt: number) => {
          if (this.#state === 'closed') throw new Error('the listener was closed');
          return retryDelay(attempt);
        },
        paranoidChecking: Math.max(250, Math.floor(opts.checkIntervalMs / 2)),
        // Payloads are validated here, not JSON.parse'd by pg-listen (which would turn garbage
        // into an 'error' event with no channel or payload to log).
        parse: (s: string) => s,
      },
    );
    const { events } = this.#sub;
    events.on('notification', ({ channel, payload }) => {
      if (channel !== opts.channel) return;
      // Held back until 'resumed' has been emitted, so the catch-up it starts is queued first.
      if (this.#state === 'reconnecting') this.#early.push(payload as string | undefined);
      else this.#onPayload(payload as string | undefined);
    });
    events.on('reconnect', (attempt) => {
      if (this.#state === 'closed') return;
      if (attempt === 1) {
        this.#reconnects++;
        opts.log.warn('listener lost its Postgres connection; reconnecting');
      }
      this.#setState('reconnecting');
    });
    events.on('connected', () => {
      // A reconnect that was under way when close() ran: end what it connected.
      if (this.#state === 'closed') {
        void this.#sub.close().catch(() => {});
        return;
      }
      // The first connect is reported by start() once LISTEN has run; pg-listen emits
      // 'connected' before that. Reconnects re-LISTEN before emitting.
      if (!this.#listening) return;
      const wasLost = this.#state === 'reconnecting';
      this.#setState('connected');
      if (!wasLost) return;
      opts.log.info({ reconnects: this.#reconnects }, 'listener reconnected');
      this.emit('resumed');
      const early = this.#early;
      this.#early = [];
      for (const p of early) this.#onPayload(p);
    });
    events.on('error', (err) => opts.log.error({ err }, 'listener error'));
  }

  get state(): ListenerState {
    return this.#state;
  }

  /** For /health: state, since when, how many times the connection was lost, the last probe. */
  status(): { state: ListenerState; since: string; reconnects: number; channel: string; probe: { ok: boolean | null; at: string | null } } {
    return { state: this.#state, since: this.#since.toISOString(), reconnects: this.#reconnects, channel: this.#opts.channel, probe: this.#probe };
  }

  /** The last round-trip probe failed: LISTEN is not receiving what is sent on the channel. */
  get deaf(): boolean {
    return this.#probe.ok === false;
  }

  /**
   * Sends a notification on the channel through another connection and waits for it to arrive
   * here: proof that LISTEN works end to end (not through a transaction pooler, not on a replica,
   * not on a half-open connection). Never throws.
   */
  async probe(timeoutMs: number): Promise<boolean> {
    const ok = await this.#roundTrip(timeoutMs);
    if (!ok && this.#probe.ok !== false) this.#opts.log.error(`the listener did not receive its probe within ${timeoutMs} ms: LISTEN is not working`);
    if (ok && this.#probe.ok === false) this.#opts.log.info('the listener receives its probes again');
    this.#probe = { ok, at: new Date().toISOString() };
    return ok;
  }

  /** One probe: resolves true when it came back within `timeoutMs`. Never throws. */
  async #roundTrip(timeoutMs: number): Promise<boolean> {
    return this.#probes.roundTrip(timeoutMs, this.#opts.notify, (err) => this.#opts.log.warn({ err: err.message }, 'could not send the listener probe'));
  }

  /**
   * While transactions are announced, a probe every fenceMs moves the horizon (cursors carry
   * fewer ids, resumes read less). At most one in flight.
   */
  #fence(): void {
    if (!this.#dirty || this.#fencing || this.#state !== 'connected') return;
    this.#dirty = false;
    this.#fencing = true;
    void this.#roundTrip(5000).finally(() => (this.#fencing = false));
  }

  async start(): Promise<void> {
    await this.#sub.connect();
    await this.#sub.listenTo(this.#opts.channel);
    this.#listening = true;
    this.#setState('connected');
    this.#fenceTimer = setInterval(() => this.#fence(), this.#opts.fenceMs ?? 250);
    this.#fenceTimer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.#fenceTimer);
    this.#setState('closed');
    // Ending a client that already lost its connection (the listener was reconnecting) waits for
    // an 'end' that has been and gone: bounded, so that a daemon stopping then still exits.
    await Promise.race([this.#sub.close().catch(() => {}), new Promise((r) => setTimeout(r, CLOSE_WAIT_MS).unref())]);
  }

  #setState(state: ListenerState): void {
    // Closed is final: pg-listen's reconnect loop may still report attempts after close().
    if (this.#state === state || this.#state === 'closed') return;
    this.#state = state;
    this.#since = new Date();
  }

  #onPayload(raw: string | undefined): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw ?? '');
    } catch {
      parsed = undefined;
    }
    const probe = Probe.safeParse(parsed);
    if (probe.success) {
      // Probes of other daemons on the same channel (and forged ones) are none of our business.
      if (!this.#probes.arrived(probe.data.probe)) return;
      if (probe.data.xmin !== undefined) this.emit('horizon', BigInt(probe.data.xmin));
      return;
    }
    const revocation = Revocation.safeParse(parsed);
    if (revocation.success) {
      this.emit('revoke', revocation.data.revoke, Number(revocation.data.before));
      return;
    }
    const ok = Payload.safeParse(parsed);
    if (!ok.success) {
      this.#opts.log.warn({ payload: (raw ?? '').slice(0, 200) }, 'dropped a notification whose payload is not {"txid":"<transaction id>"}');
      return;
    }
    this.#dirty = true;
    this.emit('txid', ok.data.txid, null);
  }
}

/**
 * The statement that sends a probe: the payload's horizon comes from the same statement's
 * snapshot, so it is below every transaction that had not finished when the probe was sent.
 */
export function probeQuery(channel: string, nonce: string) {
  return sql`SELECT pg_notify(${channel}, json_build_object('probe', ${nonce}::text, 'xmin', pg_snapshot_xmin(pg_current_snapshot())::text)::text)`;
}
