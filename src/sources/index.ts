/**
 * A source of committed changes: where the daemon (or, in Redis fan-out mode, the relay) hears
 * that transactions changed alerts. Three kinds, picked here and nowhere else:
 *   notify  LISTEN on the triggers' channel (src/sources/listen.ts);
 *   poll    reading new transaction ids every PGBELL_POLL_MS (src/sources/poll.ts);
 *   wal     a logical replication stream of the table and its bookkeeping (src/sources/wal.ts).
 * Delivery, catch-up and the relay see only these events.
 */
import { Listener, probeQuery } from './listen.js';
import type { ChangeSource, SourceOptions } from './types.js';
import { Poller } from './poll.js';
import { WalSource } from './wal.js';

export type { ChangeSource, Mode, SourceEvents, SourceOptions, SourceState } from './types.js';

export function createSource(o: SourceOptions): ChangeSource {
  switch (o.mode) {
    case 'poll':
      return new Poller({ db: o.db, intervalMs: o.pollMs, log: o.log });
    case 'wal':
      return new WalSource({ connectionString: o.listenUrl, db: o.db, log: o.log, checkIntervalMs: o.checkIntervalMs, carryMaxBytes: o.walCarryMaxBytes });
    case 'notify':
      return new Listener({
        connectionString: o.listenUrl,
        channel: o.channel,
        log: o.log,
        checkIntervalMs: o.checkIntervalMs,
        notify: async (nonce) => void (await probeQuery(o.channel, nonce).execute(o.db)),
      });
  }
}
