/**
 * The page the tab tests open (bundled by test/helpers/browser.ts's startTestPage): pgbell/client
 * for the user named in the query, with what it saw kept on `window.__pg` for the test to read.
 */
import { createClient } from '../../src/client/index.js';

// Compiled with the tests' Node types, not the DOM's: the two globals it needs, by hand.
const page = globalThis as unknown as { location: { search: string }; __pg: unknown };
const q = new URLSearchParams(page.location.search);
const user = q.get('user') ?? 'ann';
const num = (name: string) => (q.get(name) ? Number(q.get(name)) : undefined);

const client = createClient({
  url: q.get('ws')!,
  pollUrl: '/alerts',
  getToken: () =>
    fetch(`/token?user=${encodeURIComponent(user)}`)
      .then((r) => r.json())
      .then((j) => (j as { token: string }).token),
  shareTabs: q.get('share') !== '0',
  ...(num('poll') ? { pollIntervalMs: num('poll') } : {}),
  ...(num('beat') ? { heartbeatMs: num('beat') } : {}),
  ...(num('pong') ? { pongTimeoutMs: num('pong') } : {}),
  debug: true,
});
/** How often `notification` fired for each alert id. */
const announced: Record<string, number> = {};
client.on('notification', (a) => (announced[a.id] = (announced[a.id] ?? 0) + 1));
page.__pg = {
  client,
  announced,
  user,
  view: () => ({ ids: client.state.alerts.map((a) => a.id), users: [...new Set(client.state.alerts.map((a) => a.userId))], role: client.state.role, status: client.state.status, unread: client.state.unread }),
};
void client.start();
