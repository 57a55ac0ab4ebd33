/** Serves a fetch-style handler (Request → Response) from node:http. */
import type http from 'node:http';
import { MAX_BODY_BYTES } from './alerts.js';
import { requestTarget } from './target.js';

export async function handleWithFetch(req: http.IncomingMessage, res: http.ServerResponse, handler: (r: Request) => Promise<Response>): Promise<void> {
  // The target alone makes the URL: a Host header is the client's to bend, and the handler
  // routes by path only.
  const target = requestTarget(req);
  if (!target) return answer(res, 400, { error: 'bad_request', message: 'the request target does not parse' });
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    try {
      if (Array.isArray(value)) for (const v of value) headers.append(name, v);
      else if (value !== undefined) headers.set(name, value);
    } catch {
      return answer(res, 400, { error: 'bad_request', message: `header ${name} is not a valid header value` });
    }
  }
  const method = req.method ?? 'GET';
  let body: Buffer | undefined;
  // A body is read only from a request that names a bearer token (a request without one gets
  // its 401 from the headers), and never more than the handler accepts: beyond that the
  // connection is ended, so a client cannot make the daemon hold a large body.
  if (method !== 'GET' && method !== 'HEAD' && /^Bearer\s+\S+$/i.test(req.headers.authorization ?? '')) {
    const read = await readBody(req, MAX_BODY_BYTES);
    if (read === null) {
      res.setHeader('connection', 'close');
      answer(res, 413, { error: 'payload_too_large', message: `body is larger than ${MAX_BODY_BYTES} bytes` });
      res.once('finish', () => req.destroy());
      return;
    }
    body = read;
  }
  const response = await handler(new Request(target, { method, headers, ...(body ? { body } : {}) }));
  const out = Buffer.from(await response.arrayBuffer());
  const outHeaders: Record<string, string> = {};
  response.headers.forEach((v, k) => (outHeaders[k] = v));
  outHeaders['content-length'] = String(out.length);
  res.writeHead(response.status, outHeaders);
  res.end(method === 'HEAD' ? undefined : out);
}

function answer(res: http.ServerResponse, status: number, body: { error: string; message: string }): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The body, or null once it grows past `limit` bytes (the rest is not read). */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        req.pause();
        resolve(null);
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
