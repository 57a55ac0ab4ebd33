/**
 * A TCP proxy in front of Postgres that can hold back the server's answers on one connection:
 * armed with a marker (a prepared statement's name), it starts buffering what the server sends
 * on the first connection whose client sends that marker, until release(). The query has run
 * (its snapshot is taken) but the daemon has not seen the result: a read "in flight", on demand.
 */
import net from 'node:net';

export class HoldingProxy {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #marker: Buffer | null = null;
  #held: { out: net.Socket; buffered: Buffer[] } | null = null;
  #onHeld: (() => void) | null = null;
  port = 0;

  private constructor(target: { host: string; port: number }) {
    this.#server = net.createServer((client) => {
      const upstream = net.connect(target.port, target.host);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('error', () => {});
        s.on('close', () => {
          this.#sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      const held = { out: client, buffered: [] as Buffer[] };
      client.on('data', (chunk: Buffer) => {
        if (this.#marker && !this.#held && chunk.includes(this.#marker)) {
          this.#held = held;
          this.#marker = null;
        }
        upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        if (this.#held === held) {
          held.buffered.push(chunk);
          this.#onHeld?.();
          this.#onHeld = null;
        } else client.write(chunk);
      });
    });
  }

  static async start(targetUrl: string): Promise<HoldingProxy> {
    const u = new URL(targetUrl);
    const p = new HoldingProxy({ host: u.hostname, port: Number(u.port || 5432) });
    await new Promise<void>((r) => p.#server.listen(0, '127.0.0.1', () => r()));
    p.port = (p.#server.address() as net.AddressInfo).port;
    return p;
  }

  /** The same URL, through this proxy. */
  url(targetUrl: string): string {
    const u = new URL(targetUrl);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  /** Holds the answers on the next connection that sends `marker`; resolves once an answer is held. */
  holdAfter(marker: string): Promise<void> {
    this.#marker = Buffer.from(marker);
    return new Promise((r) => (this.#onHeld = r));
  }

  release(): void {
    const h = this.#held;
    this.#held = null;
    if (h) for (const b of h.buffered) h.out.write(b);
  }

  async close(): Promise<void> {
    this.release();
    for (const s of this.#sockets) s.destroy();
    await new Promise((r) => this.#server.close(r));
  }
}
