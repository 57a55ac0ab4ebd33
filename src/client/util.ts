/** Small pure helpers of the client: the reconnect schedule and reading a session token. */

/** Delay before reconnect attempt `attempt` (0-based): uniform in [0, min(cap, base·2^attempt)). */
export function backoffDelay(attempt: number, baseMs = 500, capMs = 30_000, random: () => number = Math.random): number {
  return random() * Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
}

/** The JWT's claims, unverified (the daemon verifies; the client only reads `exp` and `sub`). */
function claims(token: string): Record<string, unknown> | null {
  try {
    const part = token.split('.')[1];
    if (!part) return null;
    const json = JSON.parse(atob(part.replace(/-/g, '+').replace(/_/g, '/')));
    return json && typeof json === 'object' ? json : null;
  } catch {
    return null;
  }
}

/** Seconds since the epoch at which a JWT expires, or null if it does not say. */
export function tokenExpiry(token: string): number | null {
  const exp = claims(token)?.exp;
  return typeof exp === 'number' ? exp : null;
}

/** The user a JWT is for (`sub`), or null. It keys the tabs' shared connection. */
export function tokenSubject(token: string): string | null {
  const sub = claims(token)?.sub;
  return typeof sub === 'string' ? sub : null;
}
