/**
 * The demo bell: a navbar with a status dot and a bell (unread badge, dropdown list, mark read,
 * mark all read, category filter). Everything live comes from pgbell/react; this file only draws.
 */
import { useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { useNotifications, type Alert } from '../src/react/index.js';

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

/** A second, independent user of the hook: it shares the bell's connection, it does not open one. */
function TitleCount() {
  const { unread } = useNotifications(options);
  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) pgbell demo` : 'pgbell demo';
  }, [unread]);
  return null;
}

function App() {
  const { alerts, unread, status, markRead, markAllRead, subscribe } = useNotifications(options);
  const [open, setOpen] = useState(false);
  const [filter, setFilter] = useState('');

  return (
    <>
      <TitleCount />
      <nav className="navbar">
        <span className="brand">pgbell demo</span>
        <span className="spacer" />
        <span className={`status status-${status}`} title="connection status">
          <span className="dot" /> <span data-testid="ws-status">{status}</span>
        </span>
        <button className="bell" data-testid="bell" aria-label={`${unread} unread notifications`} onClick={() => setOpen(!open)}>
          <BellIcon />
          <span className={`badge${unread === 0 ? ' zero' : ''}`} data-testid="bell-count">
            {unread}
          </span>
        </button>
        {open && (
          <div className="dropdown" data-testid="dropdown">
            <div className="dropdown-head">
              <select
                data-testid="filter"
                value={filter}
                onChange={(e) => {
                  setFilter(e.target.value);
                  void subscribe(e.target.value ? [e.target.value] : []);
                }}
              >
                <option value="">All categories</option>
                {TYPES.map((t) => (
                  <option key={t} value={t}>
                    {t}
                  </option>
                ))}
              </select>
              <button data-testid="mark-all-read" onClick={() => void markAllRead()} disabled={unread === 0}>
                Mark all read
              </button>
            </div>
            {alerts.length === 0 ? <p className="empty">No notifications</p> : null}
            <ul>
              {alerts.map((a) => (
                <Item key={a.id} alert={a} onRead={() => void markRead([a.id])} />
              ))}
            </ul>
          </div>
        )}
      </nav>
      <main>
        <h1>Hello, {config.user.email}</h1>
        <p>Insert a row and watch the bell — no refresh, no broadcast call:</p>
        <pre>{config.psql}</pre>
        <p>Stop the WebSocket daemon and the status turns to <code>polling</code>; new alerts still arrive.</p>
      </main>
    </>
  );
}

/** Drawn, not an emoji: the page must look right offline, without an emoji font. */
function BellIcon() {
  return (
    <svg width="22" height="22" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round" aria-hidden="true">
      <path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9" />
      <path d="M13.73 21a2 2 0 0 1-3.46 0" />
    </svg>
  );
}

function Item({ alert, onRead }: { alert: Alert; onRead: () => void }) {
  return (
    <li className={alert.read ? 'read' : 'unread'} data-testid="alert-item" data-id={alert.id} data-read={String(alert.read)}>
      <div className="title">
        <span className="kind">{alert.type}</span> {alert.title}
      </div>
      {alert.message ? <div className="message">{alert.message}</div> : null}
      <div className="meta">
        <time dateTime={alert.createdAt}>{new Date(alert.createdAt).toLocaleTimeString()}</time>
        {!alert.read && (
          <button data-testid="mark-read" onClick={onRead}>
            Mark read
          </button>
        )}
      </div>
    </li>
  );
}

createRoot(document.getElementById('root')!).render(<App />);
