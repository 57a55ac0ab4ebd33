/** A real `ws` client that records everything it receives, with waits for tests. */
import WebSocket from 'ws';

export interface Closed {
  code: number;
  reason: string;
}

export class TestClient {
  readonly messages: any[] = [];
  readonly closed: Promise<Closed>;
  #waiters: Array<() => void> = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      this.messages.push(isBinary ? data : JSON.parse(String(data)));
      for (const w of this.#waiters) w();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
    ws.on('error', () => {});
  }

  static async connect(url: string, opts: WebSocket.ClientOptions = {}): Promise<TestClient> {
    const ws = new WebSocket(url, opts);
    const client = new TestClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    return client;
  }

  /** Connects and authenticates (resuming from `after`); resolves once `synced` arrived: live from then on. */
  static async ready(url: string, token: string, after?: string): Promise<TestClient> {
    const client = await TestClient.connect(url);
    client.send({ type: 'auth', token, ...(after ? { after } : {}) });
    await client.next((m) => m.type === 'synced');
    return client;
  }

  /** The cursor of the last message that carried one. */
  cursor(): string | undefined {
    for (let i = this.messages.length - 1; i >= 0; i--) if (this.messages[i].cursor) return this.messages[i].cursor;
    return undefined;
  }

  send(msg: unknown): void {
    this.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  /** The first message (already received or future) matching `pred`. */
  async next(pred: (m: any) => boolean, timeoutMs = 5000): Promise<any> {
    return this.until(() => this.messages.find(pred), timeoutMs, 'a matching message');
  }

  /** Waits until `n` messages of type `type` have arrived, returns them. */
  async count(type: string, n: number, timeoutMs = 10_000): Promise<any[]> {
    return this.until(
      () => {
        const got = this.of(type);
        return got.length >= n ? got : undefined;
      },
      timeoutMs,
      `${n} "${type}" messages`,
    );
  }

  of(type: string): any[] {
    return this.messages.filter((m) => m.type === type);
  }

  alerts(): any[] {
    return this.of('notification').map((m) => m.alert);
  }

  private until<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const tryNow = () => {
        const v = check();
        if (v !== undefined) {
          cleanup();
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received: ${JSON.stringify(this.messages).slice(0, 500)}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== tryNow);
      };
      this.#waiters.push(tryNow);
      tryNow();
    });
  }

  close(): void {
    this.ws.close();
  }
}

/** Resolves after `ms`; used only to give a wrong delivery the chance to show up. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
