/**
 * A request's target (`req.url`) as a URL, or null when it does not parse. Node hands the
 * request line's target over as the client sent it: `//x:99999/`, `//[/` or `http://[/` make
 * `new URL` throw, and a throw in a request or upgrade handler would end the process. Every
 * route and the upgrade go through here and answer 400 to null.
 */
import type http from 'node:http';

export function requestTarget(req: http.IncomingMessage): URL | null {
  try {
    return new URL(req.url ?? '/', 'http://localhost');
  } catch {
    return null;
  }
}

/** The bare answer to a target that does not parse, for a socket that has not been upgraded. */
export const BAD_TARGET_RESPONSE = 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 69\r\n\r\n{"error":"bad_request","message":"the request target does not parse"}';
