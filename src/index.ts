/**
 * What an app imports from `pgbell`: the daemon (to embed it), the /alerts handler (to mount it
 * in its own routes), and session tokens (to sign them for its users).
 */
export { signSessionToken, secretKey, verifySessionToken, type Session } from './auth.js';
export { createDb, type Db } from './db/connect.js';
export { migrate } from './db/migrate.js';
export { startDaemon, type Daemon, type DaemonOptions } from './daemon/daemon.js';
export { CloseCode, ErrorCodes, HttpErrorCodes } from './errors.js';
export { alertsHandler, type AlertsHandler, type AlertsHandlerOptions } from './server/alerts.js';
export type { ServerMessage, WireAlert } from './protocol.js';
