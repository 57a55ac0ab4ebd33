/**
 * The feed's states under chaos: what a user does in the bell beside the app's writers, and what
 * every tab must end with. Two actors per run mark alerts seen (some ids, or all), archives them
 * (some ids, every read one, all), unarchives archived ones and mutes types, as a browser does
 * (POST /alerts/seen, /archive, /unarchive, PUT /alerts/preferences, through the same proxies as
 * the tabs, to any node) or as a cron job does (pgbell.mark_seen, archive, unarchive, set_muted
 * by SQL, with or without a limit). A state change never waits for a writer, so a writer's
 * statement must still never fail; an HTTP answer other than 200 is a failure unless it is the
 * defined answer to a fault or a race: 503 (the database away), 429, 404 unknown_alert (a
 * writer deleted or moved one of the ids meanwhile), or no answer at all (a node killed, a cut).
 *
 * At the end, `expectedFor` is the bell of one tab as a SELECT of the database says it must be:
 * its list (not archived; of its types, or without a filter of no muted type) and its counts
 * (unread, unseen, byType: of the list, muted types left out even when named).
 */
import pg from 'pg';
import { secretKey, signSessionToken } from '../../src/auth.js';
import { isFaultError, TYPES } from './workload.js';

export interface FeedCounts {
  seen: number;
  archives: number;
  unarchives: number;
  mutes: number;
  /** Alerts changed by the state changes (their `updated`, or the SQL functions' result). */
  changed: number;
  /** Alerts a writer held throughout an HTTP state change (`pending`). */
  pending: number;
  /** 404 unknown_alert: an id deleted or moved by a writer before the request. */
  refused: number;
  /** Requests with no answer, 503 or 429, and SQL calls cut by a fault. */
  faulted: number;
}

export function newFeedCounts(): FeedCounts {
  return { seen: 0, archives: 0, unarchives: 0, mutes: 0, changed: 0, pending: 0, refused: 0, faulted: 0 };
}

export interface ActorContext {
  url: string;
  users: readonly string[];
  secret: string;
  /** The nodes' HTTP addresses (through the tabs' proxies). */
  bases: () => string[];
  random: () => number;
  counts: FeedCounts;
  failures: string[];
  writing: () => boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A user's feed actions (a user drawn for each), one every 50–150 ms, until the writers stop. */
export async function feedActor(a: ActorContext): Promise<void> {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(a.random() * xs.length)]!;
  const key = secretKey(a.secret);
  const tokens = new Map<string, string>();
  const token = async (user: string) => tokens.get(user) ?? tokens.set(user, await signSessionToken(key, { userId: user, ttlSeconds: 3600 })).get(user)!;
  let c: pg.Client | null = null;

  /** Some of the user's alerts, archived or not: ids for a request (none when there is none). */
  const some = (rows: Array<{ id: string }>) => [...new Set(Array.from({ length: 1 + Math.floor(a.random() * 4) }, () => pick(rows).id))];

  async function http(user: string, method: 'POST' | 'PUT', path: string, body: unknown): Promise<void> {
    const what = `${method} /alerts/${path} ${JSON.stringify(body)} as ${user}`;
    let res: Response;
    try {
      res = await fetch(`${pick(a.bases())}/alerts/${path}`, {
        method,
        headers: { authorization: `Bearer ${await token(user)}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(8000),
      });
    } catch {
      a.counts.faulted++; // no answer: a node killed or cut, a frozen path
      return;
    }
    const text = await res.text().catch(() => '');
    let json: any = null;
    try {
      json = JSON.parse(text);
    } catch {}
    if (res.status === 200) {
      if (path === 'preferences') return;
      a.counts.changed += json?.updated ?? 0;
      a.counts.pending += json?.pending ?? 0;
    } else if (res.status === 404 && json?.error === 'unknown_alert') a.counts.refused++;
    else if (res.status === 503 || res.status === 429) a.counts.faulted++;
    else a.failures.push(`writer (the feed's actor): ${what} answered ${res.status} ${text.slice(0, 200)}`);
  }

  async function sql(text: string, params: unknown[]): Promise<void> {
    const r = await c!.query<{ n: string }>(text, params);
    a.counts.changed += Number(r.rows[0]?.n ?? 0);
  }

  while (a.writing()) {
    await sleep(50 + a.random() * 100);
    try {
      if (!c) {
        c = new pg.Client({ connectionString: a.url });
        c.on('error', () => {});
        await c.connect();
      }
      const user = pick(a.users);
      const rows = (await c.query<{ id: string; archived: boolean }>(`SELECT id, archived FROM pgbell."AlertChange" WHERE "userId" = $1`, [user])).rows;
      const listed = rows.filter((r) => !r.archived);
      const archived = rows.filter((r) => r.archived);
      const byHttp = a.random() < 0.65;
      const limit = a.random() < 0.3 ? 1 + Math.floor(a.random() * 20) : null;
      const r = a.random();
      if (r < 0.36) {
        // Seen: some alerts (the bell opened on them), or every one not archived.
        a.counts.seen++;
        const all = a.random() < 0.15 || listed.length === 0;
        if (byHttp) await http(user, 'POST', 'seen', all ? { all: true } : { ids: some(listed) });
        else await sql(`SELECT pgbell.mark_seen($1, $2::text[], $3) AS n`, [user, all ? null : some(listed), limit]);
      } else if (r < 0.62) {
        // Archive: some alerts, every read one, or (rarely) all.
        a.counts.archives++;
        const how = a.random();
        const body = how < 0.06 ? { all: true } : how < 0.25 || listed.length === 0 ? { read: true } : { ids: some(listed) };
        if (byHttp) await http(user, 'POST', 'archive', body);
        else await sql(`SELECT pgbell.archive($1, $2::text[], $3, $4) AS n`, [user, 'ids' in body ? body.ids : null, 'read' in body, limit]);
      } else if (r < 0.93) {
        if (archived.length === 0) continue;
        a.counts.unarchives++;
        const ids = some(archived);
        if (byHttp) await http(user, 'POST', 'unarchive', { ids });
        else await sql(`SELECT pgbell.unarchive($1, $2::text[], $3) AS n`, [user, ids, limit]);
      } else {
        // Mute a set of types, often none (an unmute).
        a.counts.mutes++;
        const muted = TYPES.filter(() => a.random() < 0.25);
        if (byHttp) await http(user, 'PUT', 'preferences', { muted });
        else await sql(`SELECT pgbell.set_muted($1, $2::text[]) AS n`, [user, muted]);
      }
    } catch (err) {
      if (isFaultError(err)) a.counts.faulted++;
      else {
        const e = err as { code?: string; message?: string };
        a.failures.push(`writer (the feed's actor, SQL): ${e.code ?? ''} ${e.message}`);
      }
      await c?.end().catch(() => {});
      c = null;
      await sleep(100);
    }
  }
  await c?.end().catch(() => {});
}

export interface FeedRow {
  userId: string;
  type: string;
  read: boolean;
  seen: boolean;
  archived: boolean;
}

export interface FeedTruth {
  rows: Map<string, FeedRow>;
  /** user → muted types */
  muted: Map<string, string[]>;
}

/** The feed's states as pgbell's "Alert" view has them, and every user's muted types. */
export async function readFeedTruth(url: string): Promise<FeedTruth> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const rows = (await c.query<FeedRow & { id: string }>(`SELECT id, "userId", type, read, seen, archived FROM pgbell."Alert"`)).rows;
    const muted = (await c.query<{ userId: string; muted: string[] }>(`SELECT "userId", muted FROM pgbell.preference`)).rows;
    return { rows: new Map(rows.map(({ id, ...r }) => [id, r])), muted: new Map(muted.map((m) => [m.userId, m.muted])) };
  } finally {
    await c.end();
  }
}

export type Counts = { unread: number; unseen: number; byType: Record<string, { unread: number; unseen: number }> };

/**
 * A tab's bell as the database says it must be: the ids of its list and its counts. Archived
 * alerts are in neither; a muted type is in neither, except that a tab whose types= names it
 * lists it (still uncounted).
 */
export function expectedFor(truth: FeedTruth, userId: string, types: readonly string[] | null): { list: Set<string>; counts: Counts } {
  const muted = truth.muted.get(userId) ?? [];
  const list = new Set<string>();
  const byType: Counts['byType'] = {};
  for (const [id, r] of truth.rows) {
    if (r.userId !== userId || r.archived) continue;
    if (types ? !types.includes(r.type) : muted.includes(r.type)) continue;
    list.add(id);
    if (r.read || muted.includes(r.type)) continue;
    const t = (byType[r.type] ??= { unread: 0, unseen: 0 });
    t.unread++;
    if (!r.seen) t.unseen++;
  }
  const sum = (k: 'unread' | 'unseen') => Object.values(byType).reduce((n, t) => n + t[k], 0);
  return { list, counts: { unread: sum('unread'), unseen: sum('unseen'), byType } };
}
