/**
 * Prometheus metrics for GET /metrics (prom-client). Each daemon has a registry of its own, so
 * two daemons in one process (tests, embedding) do not collide.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Aggregator } from 'prom-client';

export interface MetricSources {
  connections: () => number;
  users: () => number;
  pendingAuth: () => number;
  listenerReconnects: () => number;
  queueUsage: () => number | null;
  /** Bytes of rows kept for syncs that may not have seen a live transaction (see Delivery.#recent). */
  recentBytes?: () => number;
}

/** Plain running totals for the periodic info summary in the log (src/daemon/summary.ts). */
export interface Tally {
  /** New alerts that reached at least one socket. */
  alerts: number;
  /** Messages written to sockets (notification, update, delete). */
  delivered: number;
  authenticated: number;
  /** Changes sent from cursors (resumes and catch-ups). */
  replayed: number;
  /** Sockets refused at the connection limits (1013). */
  refused: number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly tally: Tally = { alerts: 0, delivered: 0, authenticated: 0, replayed: 0, refused: 0 };
  readonly #delivered: Counter<'kind'>;
  readonly #latency: Histogram;
  readonly #liveRead: Histogram;
  readonly #replayed: Counter<'reason'>;
  readonly #slow: Counter;
  readonly #liveTx: Counter<'via'>;
  readonly #authFailures: Counter<'reason'>;
  readonly #closes: Counter<'code'>;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'pgbell_' });
    // `aggregator`: how the workers of one machine add up (src/daemon/workers.ts): sockets sum,
    // what they all see of the one source does not.
    const gauge = (name: string, help: string, read: () => number | null, aggregator: Aggregator = 'sum') =>
      new Gauge({
        name,
        help,
        registers,
        aggregator,
        collect() {
          const v = read();
          if (v !== null) this.set(v);
        },
      });
    gauge('pgbell_connections', 'Authenticated sockets', sources.connections);
    gauge('pgbell_users', 'Users with at least one socket', sources.users);
    gauge('pgbell_pending_auth', 'Sockets that have not authenticated yet', sources.pendingAuth);
    gauge('pgbell_listener_reconnects', 'Times the listener lost its connection since start', sources.listenerReconnects, 'max');
    gauge('pgbell_notify_queue_usage', 'pg_notification_queue_usage() at the last probe (0-1)', sources.queueUsage, 'max');
    if (sources.recentBytes) gauge('pgbell_recent_bytes', 'Bytes of rows (about) kept of the live transactions of the last 10 s, for syncs that may not have seen them', sources.recentBytes);
    this.#delivered = new Counter({ name: 'pgbell_delivered_total', help: 'Messages sent to sockets, by kind', labelNames: ['kind'], registers });
    this.#latency = new Histogram({
      name: 'pgbell_delivery_seconds',
      help: 'From a notification reaching the daemon to its changes written to every socket',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.#liveRead = new Histogram({
      name: 'pgbell_live_read_seconds',
      help: 'How long a live read (the changes of the transactions just notified) took to come back from Postgres: the part of pgbell_delivery_seconds spent waiting on the database',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.#replayed = new Counter({ name: 'pgbell_replayed_total', help: 'Changes sent from a cursor: resume (a client reconnected) or catchup (the listener did)', labelNames: ['reason'], registers });
    this.#liveTx = new Counter({ name: 'pgbell_live_transactions_total', help: 'Committed transactions delivered live, by how their rows came: read (by transaction id), stream (carried by WAL mode\'s replication stream) or forwarded (read once for the machine by the primary of pgbell start --workers N)', labelNames: ['via'], registers });
    this.#slow = new Counter({ name: 'pgbell_slow_consumer_closes_total', help: 'Sockets closed with 4008 for not reading', registers });
    this.#authFailures = new Counter({ name: 'pgbell_auth_failures_total', help: 'Refused authentications, by reason', labelNames: ['reason'], registers });
    this.#closes = new Counter({ name: 'pgbell_error_closes_total', help: 'Sockets closed by pgbell with an error code', labelNames: ['code'], registers });
  }

  delivered(kind: 'notification' | 'update' | 'delete', n = 1): void {
    this.#delivered.inc({ kind }, n);
    this.tally.delivered += n;
  }

  authenticated(): void {
    this.tally.authenticated++;
  }

  deliveryLatency(seconds: number): void {
    this.#latency.observe(seconds);
  }

  liveRead(seconds: number): void {
    this.#liveRead.observe(seconds);
  }

  replayed(n: number, catchUp: boolean): void {
    if (n > 0) this.#replayed.inc({ reason: catchUp ? 'catchup' : 'resume' }, n);
    this.tally.replayed += n;
  }

  liveTransactions(via: 'read' | 'stream' | 'forwarded', n: number): void {
    if (n > 0) this.#liveTx.inc({ via }, n);
  }

  slowConsumer(): void {
    this.#slow.inc();
  }

  authFailure(reason: string): void {
    this.#authFailures.inc({ reason });
  }

  closed(code: string): void {
    this.#closes.inc({ code });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
