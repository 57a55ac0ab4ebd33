/**
 * WAL mode (PGBELL_MODE=wal): committed changes come from a logical replication stream of
 * publication `pgbell` (the table and pgbell's bookkeeping), decoded by `pgoutput`. Writers pay
 * nothing for it: no NOTIFY, so no cluster-wide lock at commit.
 *
 * - One replication connection, `application_name` pgbell-listener, with a TEMPORARY slot: the
 *   server drops it when the connection ends (a crashed daemon included), so a stopped daemon
 *   never makes Postgres keep WAL. Every reconnect makes a new slot, and what committed before
 *   it is caught up from cursors ('resumed'), as after a lost LISTEN.
 * - Each transaction arrives whole, in commit order. Its rows are turned into pgbell's changes
 *   (`carried`), so delivery does not read them again. A transaction whose rows the stream
 *   cannot render exactly (an installed table without a data column whose columns are not
 *   plain text, numbers, booleans or json; a value left out as unchanged TOAST) is announced
 *   without them, and read by transaction id as in notify mode. So is a transaction whose rows
 *   come to more than carryMaxBytes (a bulk backfill): past that, only its transaction ids are
 *   kept as it streams, so its size does not decide the daemon's memory.
 * - Horizons: the daemon emits a non-transactional logical message carrying a nonce it made and
 *   its snapshot's xmin. It is decoded at its WAL position, after every transaction below that
 *   xmin. Any role may emit such a message, so only a nonce this source is waiting for counts,
 *   once.
 * - Errors the server gives (wal_level, REPLICATION, slots, WAL senders, the publication, a
 *   pooler, a replica) are logged once as one line saying what to change; the source keeps
 *   trying and /health answers 503 meanwhile.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { sql } from 'kysely';
import type pg from 'pg';
import { LogicalReplicationService, type Pgoutput } from 'pg-logical-replication';
import { PUBLICATION, publicationProblem, readSource, SCHEMA, type Mapping } from '../db/bookkeeping.js';
import { lastWins, type Change } from '../db/changes.js';
import type { Db } from '../db/connect.js';
import { LISTENER_APPLICATION_NAME, retryDelay } from './listen.js';
import type { Logger } from '../log.js';
import { Probes } from './probes.js';
import { approxBytes } from '../util/size.js';
import type { SourceEvents, SourceState } from './types.js';
import { explain } from './walerrors.js';
import { byBigInt, CARRY_MAX_BYTES, carriedAlert, isRel, keyOf, Relations, rowUncarried, stopCarrying, type Pending, type Tuple } from './walrows.js';
import { formatLsn, parseLsn, settle, SlotPlugin } from './walslot.js';
export { explain } from './walerrors.js'; // doctor's checks (walcheck.ts) and the tests import it from here

/** The prefix of pgbell's logical messages. */
const MESSAGE_PREFIX = 'pgbell';

export interface WalOptions {
  connectionString: string;
  db: Db;
  log: Logger;
  /** A stream silent for this long (no data, no keepalive answer) is dropped and made again. */
  checkIntervalMs: number;
  /** How often a horizon message is sent while transactions arrive (default 250 ms). */
  fenceMs?: number;
  /** Past this many bytes of rows (about; see src/util/size.ts) a transaction is read by id instead of carried (default CARRY_MAX_BYTES in walrows.ts). */
  carryMaxBytes?: number | undefined;
}

export class WalSource extends EventEmitter<SourceEvents> {
  #state: SourceState = 'connecting';
  #since = new Date();
  #reconnects = 0;
  #service: LogicalReplicationService | null = null;
  #slot: string | null = null;
  #problem: string | null = null;
  #attempt = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #checkTimer: NodeJS.Timeout | undefined;
  #fenceTimer: NodeJS.Timeout | undefined;
  #lastHeard = 0;
  /** The end of what the stream has sent and this source has handled (an LSN). */
  #confirmed = 0n;
  #started = false;
  #everConnected = false;
  /**
   * The first attempt failed: the daemon started serving sockets without a stream, and they
   * took cursors. The first stream then catches up like a reconnect, or what committed before
   * its slot would be lost for them.
   */
  #servedWithoutStream = false;
  #tx: Pending | null = null;
  #mapping: Mapping | null = null;
  #relations = new Relations();
  /** Resolves start() when the first attempt fails. */
  #firstFailed: (() => void) | null = null;
  readonly #probes = new Probes();
  #dirty = false;
  #fencing = false;
  #probe: { ok: boolean | null; at: string | null } = { ok: null, at: null };
  readonly #o: WalOptions;

  constructor(opts: WalOptions) {
    super();
    this.#o = opts;
  }

  get state(): SourceState {
    return this.#state;
  }

  get deaf(): boolean {
    return this.#probe.ok === false;
  }

  status(): { state: SourceState; mode: 'wal'; since: string; reconnects: number; slot: string | null; problem: string | null; probe: { ok: boolean | null; at: string | null } } {
    return { state: this.#state, mode: 'wal', since: this.#since.toISOString(), reconnects: this.#reconnects, slot: this.#slot, problem: this.#problem, probe: this.#probe };
  }

  /**
   * Resolves once the stream runs, or once its first attempt failed (the source keeps trying:
   * the daemon runs, and /health says what is wrong).
   */
  async start(): Promise<void> {
    const source = await readSource((text) => sql.raw(text).execute(this.#o.db));
    if (!source) throw new Error('pgbell\'s bookkeeping is missing: run `pgbell migrate` (or `pgbell install`) with PGBELL_MODE=wal');
    this.#mapping = source.mapping;
    this.#started = true;
    await this.#connect();
    const half = Math.max(250, Math.floor(this.#o.checkIntervalMs / 2));
    this.#checkTimer = setInterval(() => this.#check(), half);
    this.#checkTimer.unref();
    this.#fenceTimer = setInterval(() => this.#fence(), this.#o.fenceMs ?? 250);
    this.#fenceTimer.unref();
  }

  async close(): Promise<void> {
    this.#setState('closed');
    clearTimeout(this.#retryTimer);
    clearInterval(this.#checkTimer);
    clearInterval(this.#fenceTimer);
    const service = this.#service;
    this.#service = null;
    await service?.destroy().catch(() => {});
  }

  /**
   * Emits a message with a fresh nonce and waits for it to come back on the stream: proof that
   * the stream works end to end. Never throws.
   */
  async probe(timeoutMs: number): Promise<boolean> {
    const ok = this.#state === 'connected' && (await this.#roundTrip(timeoutMs));
    if (!ok && this.#probe.ok !== false && this.#state === 'connected') this.#o.log.error(`the replication stream did not carry its probe within ${timeoutMs} ms`);
    if (ok && this.#probe.ok === false) this.#o.log.info('the replication stream carries its probes again');
    this.#probe = { ok, at: new Date().toISOString() };
    return ok;
  }

  async #roundTrip(timeoutMs: number): Promise<boolean> {
    return this.#probes.roundTrip(
      timeoutMs,
      async (nonce) =>
        void (await sql`SELECT pg_logical_emit_message(false, ${MESSAGE_PREFIX}, json_build_object('nonce', ${nonce}::text, 'xmin', pg_snapshot_xmin(pg_current_snapshot())::text)::text)`.execute(this.#o.db)),
      (err) => this.#o.log.warn({ err: err.message }, "could not emit the stream's probe message"),
    );
  }

  /** While transactions arrive, a message every fenceMs moves the horizon. At most one in flight. */
  #fence(): void {
    if (!this.#dirty || this.#fencing || this.#state !== 'connected') return;
    this.#dirty = false;
    this.#fencing = true;
    void this.#roundTrip(5000).finally(() => (this.#fencing = false));
  }

  /** A stream that has been silent too long (a half-open connection) is made again. */
  #check(): void {
    const service = this.#service;
    if (!service || this.#state !== 'connected') return;
    if (Date.now() - this.#lastHeard > this.#o.checkIntervalMs) {
      this.#lost(service, new Error(`nothing heard on the replication stream for ${this.#o.checkIntervalMs} ms`));
      return;
    }
    // Asks the server to answer at once: its keepalive is what #lastHeard waits for.
    this.#acknowledge(service, true);
  }

  /** Reports everything up to #confirmed as flushed (the slot's WAL can go). */
  #acknowledge(service: LogicalReplicationService, ping: boolean): void {
    if (this.#confirmed === 0n) return;
    void service.acknowledge(formatLsn(this.#confirmed - 1n), ping).catch(() => {});
  }

  async #connect(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#o.log.debug({ attempt: this.#attempt }, 'starting the replication stream');
    // pgoutput would only fail on the first change it decodes: check the publication first.
    let altered: string | null = null;
    try {
      altered = await publicationProblem((text) => sql.raw(text).execute(this.#o.db), this.#mapping!);
    } catch (err) {
      this.#lost(null, err as Error);
      return;
    }
    if (altered) {
      this.#lost(null, new Error(altered === 'missing' ? `publication "${PUBLICATION}" does not exist` : `publication "${PUBLICATION}" was altered: ${altered}`));
      return;
    }
    const slot = `pgbell_${randomBytes(6).toString('hex')}`;
    const service = new LogicalReplicationService(
      {
        connectionString: this.#o.connectionString,
        application_name: LISTENER_APPLICATION_NAME,
        keepAlive: true,
        keepAliveInitialDelayMillis: 10_000,
      } as pg.ClientConfig,
      // Acknowledged here, not by the library: it reports one byte past the position it is given,
      // and a walsender at shutdown waits for a flush position equal to what it sent, so a fast
      // shutdown of the server would wait for ever.
      { acknowledge: { auto: false, timeoutSeconds: 0 } },
    );
    this.#service = service;
    const failed = new Promise<void>((r) => (this.#firstFailed = r));
    let resolveStarted!: () => void;
    const started = new Promise<void>((r) => (resolveStarted = r));
    const plugin = new SlotPlugin(slot, async (client, snapshot) => {
      await settle(this.#o.db, snapshot);
      this.#slot = slot;
      this.#attempt = 0;
      this.#lastHeard = Date.now();
      if (this.#problem) this.#o.log.info('the replication stream works again');
      this.#problem = null;
      this.#setState('connected');
      const resumed = this.#everConnected || this.#servedWithoutStream;
      this.#everConnected = true;
      this.#tx = null;
      this.#confirmed = 0n;
      // Queued before anything this stream carries: the catch-up reads what committed before the slot.
      if (resumed) {
        this.#o.log.info({ reconnects: this.#reconnects, slot }, 'replication stream reconnected');
        this.emit('resumed');
      } else this.#o.log.info({ slot }, `streaming publication ${PUBLICATION} through temporary slot ${slot}`);
      resolveStarted();
      void client;
      // /health reflects the new stream at once, not at the next heartbeat's probe.
      setImmediate(() => void this.probe(5000));
    });
    service.on('data', (_lsn: string, msg: Pgoutput.Message) => {
      if (this.#service !== service) return;
      this.#lastHeard = Date.now();
      this.#onMessage(msg);
    });
    service.on('heartbeat', (lsn: string, _time: number, respond: boolean) => {
      if (this.#service !== service) return;
      this.#lastHeard = Date.now();
      // The slot is temporary and never read from again: everything sent is as good as flushed.
      const end = parseLsn(lsn);
      if (end > this.#confirmed) this.#confirmed = end;
      if (respond) this.#acknowledge(service, false);
    });
    service.on('error', (err: Error) => this.#lost(service, err));
    service.subscribe(plugin, slot).then(
      () => this.#lost(service, new Error('the server ended the replication stream')),
      (err: Error) => this.#lost(service, err),
    );
    // The first attempt: resolved when it streams or fails (see start()).
    await Promise.race([started, failed]);
  }

  /** The stream (or its setup) failed: say why, once per kind of failure, and try again. */
  #lost(service: LogicalReplicationService | null, err: Error): void {
    if (this.#service !== service || this.#state === 'closed') return;
    this.#service = null;
    this.#slot = null;
    this.#firstFailed?.();
    this.#firstFailed = null;
    if (!this.#everConnected) this.#servedWithoutStream = true;
    void service?.destroy().catch(() => {});
    const problem = explain(err);
    if (this.#state === 'connected') {
      this.#reconnects++;
      this.#o.log.warn({ err: err.message }, 'the replication stream was lost; reconnecting');
    }
    this.#o.log.debug({ err: err.message, attempt: this.#attempt }, 'replication stream attempt failed');
    if (problem && problem !== this.#problem) this.#o.log.error({ err: err.message }, problem);
    else if (!problem && this.#attempt === 0) this.#o.log.warn({ err: err.message }, 'the replication stream could not start; retrying');
    this.#problem = problem;
    this.#setState('reconnecting');
    this.#retryTimer = setTimeout(() => void this.#connect(), retryDelay(this.#attempt++));
    this.#retryTimer.unref();
  }

  #onMessage(msg: Pgoutput.Message): void {
    switch (msg.tag) {
      case 'begin':
        this.#tx = { changes: new Map(), rows: new Map(), tombstones: [], revocations: [], readInstead: false, bytes: 0, txids: null };
        return;
      case 'commit': {
        const tx = this.#tx;
        this.#tx = null;
        if (tx) this.#commit(tx);
        if (msg.commitEndLsn) {
          const end = parseLsn(msg.commitEndLsn);
          if (end > this.#confirmed) this.#confirmed = end;
        }
        return;
      }
      case 'message':
        if (!msg.transactional && msg.prefix === MESSAGE_PREFIX) this.#onOwnMessage(Buffer.from(msg.content).toString('utf8'));
        return;
      case 'insert':
      case 'update':
        this.#row(msg.relation, msg.new, msg.tag === 'update');
        return;
      case 'delete':
        if (this.#tx && this.#tx.txids === null && isRel(msg.relation, SCHEMA, 'AlertChange')) this.#tx.changes.set(keyOf(msg.key ?? msg.old), null);
        return;
      default:
        return;
    }
  }

  #row(rel: Pgoutput.MessageRelation, tuple: Tuple, update: boolean): void {
    const tx = this.#tx;
    if (!tx) return;
    if (tx.txids !== null) return rowUncarried(tx, rel, tuple);
    if (isRel(rel, SCHEMA, 'preference')) return stopCarrying(tx, rel, tuple, this.#o.log); // read by id, whole
    if (isRel(rel, SCHEMA, 'AlertChange') || isRel(rel, SCHEMA, 'AlertTombstone') || (this.#mapping && `${rel.schema}.${rel.name}` === this.#mapping.table)) {
      tx.bytes += approxBytes(tuple);
      if (tx.bytes > (this.#o.carryMaxBytes ?? CARRY_MAX_BYTES)) return stopCarrying(tx, rel, tuple, this.#o.log);
    }
    if (isRel(rel, SCHEMA, 'AlertChange')) tx.changes.set(keyOf(tuple), tuple);
    else if (isRel(rel, SCHEMA, 'AlertTombstone')) tx.tombstones.push(tuple);
    else if (isRel(rel, SCHEMA, 'pgbell_revocation')) tx.revocations.push(tuple);
    else if (this.#mapping && `${rel.schema}.${rel.name}` === this.#mapping.table) {
      // An unchanged TOAST value is left out of an update (decoded as undefined).
      if (update && Object.values(tuple).some((v) => v === undefined)) tx.readInstead = true;
      if (!this.#relations.renderable(rel, this.#mapping)) tx.readInstead = true;
      tx.rows.set(String(tuple[this.#mapping.idColumn]), { row: tuple, types: this.#relations.types(rel) });
    }
  }

  #commit(tx: Pending): void {
    for (const r of tx.revocations) {
      const before = r.before instanceof Date ? Math.floor(r.before.getTime() / 1000) : 0;
      this.emit('revoke', String(r.userId), before);
    }
    const txids = tx.txids ?? new Set<string>();
    for (const c of tx.changes.values()) if (c) txids.add(String(c.changedTxid));
    for (const t of tx.tombstones) txids.add(String(t.txid));
    if (txids.size === 0) return;
    this.#dirty = true;
    // One transaction has one id; more than one means rows re-stamped by `pgbell migrate`.
    if (txids.size > 1 || tx.readInstead) {
      for (const t of [...txids].sort(byBigInt)) this.emit('txid', t, null, null);
      return;
    }
    const [txid] = txids as Set<string>;
    const tid = BigInt(txid!);
    const m = this.#mapping!;
    const alerts: Array<Change & { kind: 'alert' }> = [];
    for (const [key, c] of tx.changes) {
      if (!c) continue;
      const found = tx.rows.get(key);
      if (!found) {
        // Bookkeeping changed without its row (a re-stamp): read it.
        this.emit('txid', txid!, null, null);
        return;
      }
      alerts.push(carriedAlert(tid, c, found.row, found.types, m));
    }
    alerts.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
    const deletes: Change[] = tx.tombstones.map((t) => ({ kind: 'delete', txid: tid, id: String(t.id), userId: String(t.userId) }));
    this.emit('txid', txid!, null, lastWins([...alerts, ...deletes]));
  }

  #onOwnMessage(text: string): void {
    let parsed: { nonce?: unknown; xmin?: unknown };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      return;
    }
    if (typeof parsed.nonce !== 'string') return;
    // Messages of other daemons on the same database (and forged ones) are none of our business.
    if (!this.#probes.arrived(parsed.nonce)) return;
    if (typeof parsed.xmin === 'string' && /^\d{1,20}$/.test(parsed.xmin)) this.emit('horizon', BigInt(parsed.xmin));
  }

  #setState(state: SourceState): void {
    if (this.#state === state || this.#state === 'closed') return;
    this.#state = state;
    this.#since = new Date();
  }
}
