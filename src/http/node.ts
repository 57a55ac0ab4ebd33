/** Serves a fetch-style handler (Request → Response) from node:http. */
import type http from 'node:http';
import { MAX_BODY_BYTES } from './alerts.js';

export async function handleWithFetch(req: http.IncomingMessage, res: http.ServerResponse, handler: (r: Request) => Promise<Response>): Promise<void> {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else if (value !== undefined) headers.set(name, value);
  }
  const method = req.method ?? 'GET';
  let body: Buffer | undefined;
  if (method !== 'GET' && method !== 'HEAD') {
    body = await readBody(req, MAX_BODY_BYTES + 1);
  }
  const url = `http://${req.headers.host ?? 'localhost'}${req.url ?? '/'}`;
  const response = await handler(new Request(url, { method, headers, ...(body ? { body } : {}) }));
  const out = Buffer.from(await response.arrayBuffer());
  const outHeaders: Record<string, string> = {};
  response.headers.forEach((v, k) => (outHeaders[k] = v));
  outHeaders['content-length'] = String(out.length);
  res.writeHead(response.status, outHeaders);
  res.end(method === 'HEAD' ? undefined : out);
}

/** Reads at most `limit` bytes; the handler rejects a body that reached it. */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      if (size >= limit) return;
      chunks.push(chunk);
      size += chunk.length;
    });
    req.on('end', () => resolve(Buffer.concat(chunks).subarray(0, limit)));
    req.on('error', reject);
  });
}
