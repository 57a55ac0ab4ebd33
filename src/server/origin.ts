/**
 * Which web origins may talk to pgbell: WebSocket handshakes (cross-site WebSocket hijacking)
 * and CORS on /alerts use the same list. Entries are exact origins (`https://app.example.com`),
 * `scheme://host:*` for any port of a host (what `pgbell dev` allows for localhost), or `*`.
 */
export function originAllowed(origin: string, allowed: readonly string[]): boolean {
  for (const a of allowed) {
    if (a === '*' || a === origin) return true;
    if (a.endsWith(':*') && origin.startsWith(a.slice(0, -1)) && /^\d+$/.test(origin.slice(a.length - 1))) return true;
  }
  return false;
}

/** What `pgbell dev` adds: the demo app and any other local page. */
export const LOCAL_ORIGINS = ['http://localhost:*', 'http://127.0.0.1:*', 'http://[::1]:*'] as const;
