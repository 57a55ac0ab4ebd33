/**
 * Probes in flight, by nonce: a source sends a message carrying a nonce it made (a NOTIFY, a
 * logical message) and waits for it to come back on its own connection. Only a nonce waited
 * for counts, and only once, so a forged or replayed message proves nothing and moves nothing.
 */
import { randomBytes } from 'node:crypto';

export class Probes {
  readonly #waiting = new Map<string, () => void>();

  /**
   * Sends a fresh nonce with `send` and resolves true when arrived() sees it within
   * `timeoutMs`, false otherwise. A failed send counts as not arrived (after `onSendError`).
   */
  async roundTrip(timeoutMs: number, send: (nonce: string) => Promise<void>, onSendError: (err: Error) => void): Promise<boolean> {
    const nonce = randomBytes(12).toString('base64url');
    const arrived = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(nonce);
        resolve(false);
      }, timeoutMs);
      this.#waiting.set(nonce, () => {
        clearTimeout(timer);
        this.#waiting.delete(nonce);
        resolve(true);
      });
    });
    try {
      await send(nonce);
    } catch (err) {
      onSendError(err as Error);
    }
    return arrived;
  }

  /** A nonce came back: true if it was one being waited for (it then no longer is). */
  arrived(nonce: string): boolean {
    const waiting = this.#waiting.get(nonce);
    if (!waiting) return false;
    waiting();
    return true;
  }
}
