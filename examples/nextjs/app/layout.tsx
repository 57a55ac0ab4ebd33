/**
 * The navbar: the bell for a signed-in user, beside a sign-out button. PGBELL_PUBLIC_URL is the
 * daemon's WebSocket URL as browsers reach it (read at request time, not baked into the build).
 */
import type { ReactNode } from 'react';
import { Bell } from '@/components/Bell';
import { currentUser } from '@/lib/session';

export const dynamic = 'force-dynamic';
export const metadata = { title: 'Example app' };

export default async function RootLayout({ children }: { children: ReactNode }) {
  const user = await currentUser();
  return (
    <html lang="en">
      <body style={{ fontFamily: 'system-ui, sans-serif', margin: 0 }}>
        <nav style={{ display: 'flex', justifyContent: 'space-between', alignItems: 'center', padding: '8px 16px', borderBottom: '1px solid #eee' }}>
          <strong>Example app</strong>
          {user && (
            <div style={{ display: 'flex', gap: 12, alignItems: 'center' }}>
              <Bell url={process.env.PGBELL_PUBLIC_URL ?? 'ws://localhost:8080/'} />
              <span data-testid="who">{user.email}</span>
              <form action="/api/signout" method="post">
                <button data-testid="signout">Sign out</button>
              </form>
            </div>
          )}
        </nav>
        <main style={{ padding: 16 }}>
          <h1 style={{ fontSize: 20 }}>Example app</h1>
          {children}
        </main>
      </body>
    </html>
  );
}
