'use client';
/**
 * The navbar bell: pgbell/react's headless hook, drawn here. A dot shows the connection status
 * (live, polling while the socket is down, connecting, offline), a badge the unread count, and a
 * select narrows the bell to one category (the socket then carries only that type).
 */
import { useState } from 'react';
import { useNotifications } from 'pgbell/react';

const getToken = () =>
  fetch('/api/pgbell-token', { cache: 'no-store' })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`token: HTTP ${r.status}`))))
    .then((j: { token: string }) => j.token);

const COLORS = { live: '#2b8a3e', polling: '#e67700', connecting: '#868e96', offline: '#c92a2a' } as const;
const CATEGORIES = ['all', 'info', 'mention', 'billing', 'security'];

export function Bell({ url }: { url: string }) {
  const { alerts, unread, status, markRead, markAllRead, subscribe } = useNotifications({ url, pollUrl: '/api/alerts', getToken });
  const [open, setOpen] = useState(false);
  const [category, setCategory] = useState('all');
  const choose = (c: string) => {
    setCategory(c);
    void subscribe(c === 'all' ? [] : [c]);
  };
  const shown = category === 'all' ? alerts : alerts.filter((a) => a.type === category);
  return (
    <div style={{ position: 'relative', display: 'flex', alignItems: 'center', gap: 8 }}>
      <span data-testid="status" data-status={status} title={status} style={{ width: 10, height: 10, borderRadius: 5, background: COLORS[status] }} />
      <select data-testid="category" value={category} onChange={(e) => choose(e.target.value)} aria-label="category">
        {CATEGORIES.map((c) => (
          <option key={c} value={c}>
            {c}
          </option>
        ))}
      </select>
      <button data-testid="bell" onClick={() => setOpen(!open)} aria-label={`${unread} unread notifications`}>
        🔔 <span data-testid="badge">{unread}</span>
      </button>
      {open && (
        <div data-testid="dropdown" style={{ position: 'absolute', top: 32, right: 0, width: 320, background: 'white', border: '1px solid #ddd', padding: 8 }}>
          <button onClick={() => void markAllRead()}>Mark all read</button>
          {shown.length === 0 && <p>Nothing yet.</p>}
          <ul style={{ listStyle: 'none', padding: 0 }}>
            {shown.map((a) => (
              <li key={a.id} data-testid="alert" onClick={() => void markRead([a.id])} style={{ fontWeight: a.read ? 'normal' : 'bold', cursor: 'pointer', padding: '4px 0' }}>
                [{a.type}] {a.title}
                {a.message && <div style={{ fontWeight: 'normal', color: '#555' }}>{a.message}</div>}
              </li>
            ))}
          </ul>
        </div>
      )}
    </div>
  );
}
