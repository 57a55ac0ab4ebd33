/**
 * The demo page: a navbar with the connection's status and pgbell/react's <NotificationBell />
 * (unread badge, status dot, dropdown list, category filter, mark read, mark all read, load
 * more). Everything live comes from pgbell/react; this file only places it.
 */
import { useEffect } from 'react';
import { createRoot } from 'react-dom/client';
import { NotificationBell, useNotifications } from '../src/react/index.js';

interface DemoConfig {
  wsUrl: string;
  pollUrl: string;
  pollIntervalMs: number;
  user: { id: string; email: string };
  psql: string;
}

declare global {
  interface Window {
    __PGBELL__: DemoConfig;
  }
}

const config = window.__PGBELL__;
const pollParam = Number(new URLSearchParams(location.search).get('poll'));
const TYPES = ['general', 'billing', 'security', 'deploy'];

async function getToken(): Promise<string> {
  const res = await fetch('/api/token');
  if (!res.ok) throw new Error(`token endpoint answered ${res.status}`);
  return ((await res.json()) as { token: string }).token;
}

const options = {
  url: config.wsUrl,
  pollUrl: config.pollUrl,
  getToken,
  pollIntervalMs: pollParam > 0 ? pollParam : config.pollIntervalMs,
  debug: true,
};

/** Other users of the hook (the status text, the page title): they share the bell's connection. */
function Status() {
  const { status, unread } = useNotifications(options);
  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) pgbell demo` : 'pgbell demo';
  }, [unread]);
  return (
    <span className={`status status-${status}`}>
      <span className="dot" aria-hidden="true" /> <span data-testid="ws-status">{status}</span>
    </span>
  );
}

function App() {
  return (
    <>
      <header>
        <nav className="navbar" aria-label="Main">
          <span className="brand">pgbell demo</span>
          <span className="spacer" />
          <Status />
          <NotificationBell {...options} categories={TYPES} />
        </nav>
      </header>
      <main>
        <h1>Hello, {config.user.email}</h1>
        <p>Insert a row and watch the bell — no refresh, no broadcast call:</p>
        <pre>{config.psql}</pre>
        <p>
          Stop the WebSocket daemon and the status turns to <code>polling</code>; new alerts still arrive. Open the page in more tabs: they share one
          connection.
        </p>
      </main>
    </>
  );
}

createRoot(document.getElementById('root')!).render(<App />);
