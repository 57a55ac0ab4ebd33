/** POST: signs out. The bell unmounts with the page, and its socket closes. */
import { NextResponse } from 'next/server';
import { COOKIE } from '@/lib/session';

export async function POST() {
  const res = new NextResponse(null, { status: 303, headers: { Location: '/' } });
  res.cookies.delete(COOKIE);
  return res;
}
