/**
 * A TCP proxy the nemesis can fault: freeze (stop forwarding both ways, as a network partition
 * that drops nothing: it all arrives on thaw) and cut (reset every connection, as a network
 * that drops them). Used on the daemon → Postgres path and on the client → daemon path.
 */
import net from 'node:net';

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  held: Array<[net.Socket, Buffer]>;
}

export class FaultProxy {
  readonly #server: net.Server;
  readonly #pairs = new Set<Pair>();
  #frozen = false;
  port = 0;

  private constructor(private readonly target: () => number) {
    this.#server = net.createServer((client) => {
      const upstream = net.connect(this.target(), '127.0.0.1');
      const pair: Pair = { client, upstream, held: [] };
      this.#pairs.add(pair);
      const end = () => {
        this.#pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      for (const [from, to] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        from.on('error', end);
        from.on('close', end);
        from.on('data', (chunk: Buffer) => {
          if (this.#frozen) pair.held.push([to, chunk]);
          else to.write(chunk);
        });
      }
    });
  }

  /** Forwards to 127.0.0.1:`target()` (read on every new connection: the target may move). */
  static async start(target: () => number): Promise<FaultProxy> {
    const p = new FaultProxy(target);
    await new Promise<void>((r) => p.#server.listen(0, '127.0.0.1', () => r()));
    p.port = (p.#server.address() as net.AddressInfo).port;
    return p;
  }

  get frozen(): boolean {
    return this.#frozen;
  }

  get connections(): number {
    return this.#pairs.size;
  }

  /** Nothing passes until thaw(); then everything held is delivered in order. */
  freeze(): void {
    this.#frozen = true;
  }

  thaw(): void {
    this.#frozen = false;
    for (const pair of this.#pairs) for (const [to, chunk] of pair.held.splice(0)) to.write(chunk);
  }

  /** Resets every connection through the proxy. */
  cut(): number {
    const n = this.#pairs.size;
    for (const { client, upstream } of [...this.#pairs]) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    this.#pairs.clear();
    return n;
  }

  async close(): Promise<void> {
    this.thaw();
    this.cut();
    await new Promise((r) => this.#server.close(r));
  }
}
