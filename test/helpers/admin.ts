/** The admin token the machine tests start pgbell with, and /health's details read with it. */
export const ADMIN = 'admin-token-0123456789abcdef';

/**
 * GET /health with the admin token at `http` (its status and body). Retried a few times: a
 * kept-alive connection can belong to a worker just killed or replaced.
 */
export async function adminHealth(m: { http: string }): Promise<{ status: number; body: any }> {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(`${m.http}/health`, { headers: { authorization: `Bearer ${ADMIN}` } });
      return { status: res.status, body: await res.json() };
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}
