/**
 * The open-file limit of this process, and how many sockets it leaves room for.
 *
 * Every socket is a file descriptor. A daemon that reaches its limit cannot accept (the kernel
 * answers EMFILE and libuv closes what it cannot take, so the client sees a reset, not a close
 * code) and cannot open a Postgres connection either, so its syncs and live reads fail with
 * it. Refusing with 1013 below the limit keeps the reserve for what the daemon itself opens.
 */
import { readFileSync } from 'node:fs';

/**
 * The limit on open files of this process, from /proc/self/limits; null where unknown (not
 * Linux) or unlimited. Node raises the soft limit to the hard one as it starts, so this is the
 * hard limit `ulimit -Hn` (LimitNOFILE=) set.
 */
export function openFileLimit(limitsFile = '/proc/self/limits'): number | null {
  let text: string;
  try {
    text = readFileSync(limitsFile, 'utf8');
  } catch {
    return null; // not Linux
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  return m && m[1] !== 'unlimited' ? Number(m[1]) : null;
}

/**
 * Descriptors kept for the daemon's own: its Postgres pools and listener, Redis, stdio, the
 * listening socket, the event loop's, files it reads, and sockets being refused (a 1013 holds
 * its socket until the close handshake ends). A twentieth of the limit, within 64–1,000.
 */
export function reservedFiles(limit: number): number {
  return Math.min(1000, Math.max(64, Math.ceil(limit / 20)));
}

/** The sockets a daemon may hold under an open-file limit (null: no limit known). */
export function socketsAllowed(limit: number | null): number | null {
  return limit === null ? null : Math.max(1, limit - reservedFiles(limit));
}

/**
 * The connections it accepts at all: half the reserve above socketsAllowed. A burst arrives all
 * at once (the server accepts everything queued before it reads one request), so beyond this
 * Node closes each as it accepts it (the client sees a reset, as at the limit itself), and the
 * other half of the reserve stays for the daemon's own files.
 */
export function acceptAllowed(limit: number | null): number | null {
  return limit === null ? null : Math.max(1, limit - Math.floor(reservedFiles(limit) / 2));
}
