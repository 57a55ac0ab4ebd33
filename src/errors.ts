/**
 * Every error code and close code a client can see, in one table. They are part of the
 * protocol: never renumber or rename one, only add.
 */

/** WebSocket close codes. 1000-2999 are RFC 6455's; 4000-4999 are pgbell's. */
export const CloseCode = {
  /** Server shutting down; reconnect (to another node) and resume. */
  GoingAway: 1001,
  /** Frame larger than the server's maxPayload. Sent by ws itself. */
  MessageTooBig: 1009,
  /** The server could not serve this socket (a read its database refused for this user's input); it is not retried. */
  InternalError: 1011,
  /** The server is at MAX_CONNECTIONS (or its budget for unauthenticated sockets), or cannot reach its Redis; retry later, elsewhere if you can. */
  TryAgainLater: 1013,
  /** The socket did not read fast enough: more than MAX_BUFFERED_BYTES waited to be sent. Resume from the cursor. */
  SlowConsumer: 4008,
  /** The user already has MAX_CONNECTIONS_PER_USER sockets; this newest one is refused. */
  TooManyForUser: 4409,
  /** More than RATE_LIMIT messages within RATE_WINDOW_MS. */
  RateLimited: 4429,
  /** Token missing, malformed, expired or not signed by us. Get a new token before reconnecting. */
  InvalidToken: 4401,
  /** The user's sessions were revoked (a row in pgbell_revocation). Sign in again. */
  Revoked: 4403,
  /** No auth message within AUTH_TIMEOUT_MS. */
  AuthTimeout: 4408,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** `code` of an `{"type":"error"}` message, with the close code that follows it (if any). */
export const ErrorCodes = {
  invalid_token: { close: CloseCode.InvalidToken, message: 'Invalid session token' },
  auth_timeout: { close: CloseCode.AuthTimeout, message: 'No auth message received in time' },
  auth_required: { close: CloseCode.InvalidToken, message: 'The first message must be {"type":"auth","token":"..."}' },
  bad_message: { close: null, message: 'Malformed message' },
  unavailable: { close: null, message: 'The database is unavailable; try again' },
  token_expired: { close: CloseCode.InvalidToken, message: 'Session token expired; send a new one before it does' },
  token_revoked: { close: CloseCode.Revoked, message: 'Session revoked' },
  rate_limited: { close: CloseCode.RateLimited, message: 'Too many messages' },
  too_many_connections: { close: CloseCode.TooManyForUser, message: 'Too many connections for this user' },
  server_full: { close: CloseCode.TryAgainLater, message: 'The server is at its connection limit; try again later' },
  /** Redis fan-out: this node could not subscribe the socket in time, or has not reached Redis for too long. */
  node_unavailable: { close: CloseCode.TryAgainLater, message: 'This node cannot reach its Redis; reconnect, to another node if you can' },
  read_not_tracked: { close: null, message: 'This alert table keeps no read state (pgbell install without --read-column)' },
} as const satisfies Record<string, { close: CloseCode | null; message: string }>;
export type ErrorCode = keyof typeof ErrorCodes;

/**
 * `error` of an HTTP error body ({"error":code,"message":…}) from the /alerts handler, with
 * its status.
 */
export const HttpErrorCodes = {
  bad_request: 400,
  unauthorized: 401,
  /** GET /alerts/stream from a page whose origin is not in ALLOWED_ORIGINS. */
  forbidden_origin: 403,
  /** GET /alerts/stream while the daemon is at MAX_CONNECTIONS or shutting down (with Retry-After). */
  server_full: 503,
  /** The token was revoked from SQL. */
  token_revoked: 403,
  not_found: 404,
  /** GET /alerts?before=<id> with an id that is not one of the user's alerts (any more). */
  unknown_alert: 404,
  method_not_allowed: 405,
  /** The cursor is invalid, from another database or too old: reload with GET /alerts. */
  cursor_reset: 410,
  payload_too_large: 413,
  /** More than USER_RATE_LIMIT requests of this user, or ADDRESS_RATE_LIMIT of this address, in RATE_WINDOW_MS (with Retry-After). */
  rate_limited: 429,
  /** Marking read on a table installed without --read-column. */
  read_not_tracked: 409,
  unavailable: 503,
} as const;
export type HttpErrorCode = keyof typeof HttpErrorCodes;

/** Marking read where the installed table has no read column (src/db/install.ts). */
export class ReadNotTrackedError extends Error {
  constructor() {
    super(ErrorCodes.read_not_tracked.message);
  }
}
