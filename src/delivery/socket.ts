/**
 * The seam between delivery and the server: what the hub writes to. The server hands the hub a ws
 * WebSocket or an SSE stream (server/sse.ts); the hub never learns which.
 */
/** What the server and the hub use of a socket: a ws WebSocket, or an SSE stream. */
export interface Socket {
  readonly OPEN: number;
  readonly readyState: number;
  /** Bytes accepted by send() not yet handed to the network. */
  readonly bufferedAmount: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  ping(): void;
}
