'use client';
/**
 * The navbar bell: pgbell/react's <NotificationBell /> (unseen badge, status dot, dropdown,
 * category filter with counts, mark read, archive, load more; opening it marks alerts seen). This file exists only because getToken is a function, which a
 * server component (app/layout.tsx) cannot pass to a client one.
 */
import { NotificationBell } from 'pgbell/react';

const getToken = () =>
  fetch('/api/pgbell-token', { cache: 'no-store' })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`token: HTTP ${r.status}`))))
    .then((j: { token: string }) => j.token);

export function Bell({ url }: { url: string }) {
  return <NotificationBell url={url} pollUrl="/api/alerts" getToken={getToken} categories={['info', 'mention', 'billing', 'security']} />;
}
