import { currentUser } from '@/lib/session';

export const dynamic = 'force-dynamic';

export default async function Home({ searchParams }: { searchParams: Promise<{ error?: string }> }) {
  const user = await currentUser();
  if (user) return <p>Signed in as {user.email}. Insert a row into &quot;Alert&quot; for this user from anywhere and the bell rings.</p>;
  const { error } = await searchParams;
  return (
    <form action="/api/signin" method="post" style={{ display: 'flex', gap: 8 }}>
      <input name="email" type="email" placeholder="you@example.com" required data-testid="email" />
      <button data-testid="signin">Sign in</button>
      {error && <span role="alert">No user with that email.</span>}
    </form>
  );
}
