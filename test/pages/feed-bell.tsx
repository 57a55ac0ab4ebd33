/**
 * The page test/feed-bell.test.ts opens: pgbell/react's <NotificationBell /> for the user named
 * in the query, against the daemon at `ws`, with `/alerts` (every route) on the page's origin.
 * `share=0` gives the tab a socket of its own.
 */
import { createRoot } from 'react-dom/client';
import { NotificationBell } from '../../src/react/index.js';

// Compiled with the tests' Node types, not the DOM's: the globals it needs, by hand.
const page = globalThis as unknown as { location: { search: string }; document: { getElementById(id: string): unknown } };
const q = new URLSearchParams(page.location.search);
const user = q.get('user') ?? 'ann';
const getToken = () =>
  fetch(`/token?user=${encodeURIComponent(user)}`)
    .then((r) => r.json())
    .then((j) => (j as { token: string }).token);

createRoot(page.document.getElementById('root') as never).render(
  <main>
    <h1>Feed</h1>
    <NotificationBell url={q.get('ws')!} pollUrl="/alerts" getToken={getToken} shareTabs={q.get('share') !== '0'} debug />
  </main>,
);
