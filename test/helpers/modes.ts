/** The daemon options of each change source, for tests that run once per mode (poll mode polls fast). */
import type { DaemonOptions } from '../../src/daemon/daemon.js';

export const MODES: Record<'notify' | 'poll' | 'wal', Partial<DaemonOptions>> = {
  notify: { mode: 'notify' },
  poll: { mode: 'poll', pollMs: 50 },
  wal: { mode: 'wal' },
};
