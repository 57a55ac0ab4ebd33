/** POST a form with `email`: signs in the user with that email (a demo: no password). */
import { NextResponse } from 'next/server';
import { pool } from '@/lib/db';
import { COOKIE, cookieOptions, seal } from '@/lib/session';

export async function POST(req: Request) {
  const email = String((await req.formData()).get('email') ?? '').trim();
  const { rows } = await pool.query<{ id: string; email: string }>('SELECT id, email FROM "User" WHERE email = $1', [email]);
  const user = rows[0];
  // A relative Location: behind a proxy (or on 127.0.0.1) req.url's host may not be the browser's.
  const res = new NextResponse(null, { status: 303, headers: { Location: user ? '/' : '/?error=unknown' } });
  if (user) res.cookies.set(COOKIE, seal({ userId: user.id, email: user.email }), cookieOptions);
  return res;
}
