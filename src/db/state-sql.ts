/**
 * The feed's states beside read, as SQL: seen and archived live in "AlertChange" (the app's
 * table stays as it is), and these functions change them. Each change stamps the alert's
 * "changedTxid" with its own transaction and sends the triggers' NOTIFY, so it is a change like
 * any other: it streams to every tab in commit order, and a cursor resumes past it or not at
 * all. The daemon's POST /alerts/seen, /archive and /unarchive call them; so can any role the
 * operator grants EXECUTE (and USAGE on schema pgbell), a cron job archiving old alerts say.
 *
 * Definer rights, like the triggers: a caller needs no rights on pgbell's tables, and may only
 * do what the function does. They return how many alerts changed state; ids that are not the
 * user's are ignored (the HTTP routes refuse them first, with nothing changed).
 */
import { SCHEMA } from './mapping.js';

/** Every function here, by signature, for REVOKE ... FROM PUBLIC. */
export const STATE_FUNCTIONS = ['mark_seen(text, text[], int)', 'archive(text, text[], boolean, int)', 'unarchive(text, text[], int)', 'set_muted(text, text[])', 'pgbell_state_changed(bigint)'];

export function stateStatements(definer: string, quoted: (body: string) => string): string[] {
  const s = SCHEMA;
  return [
    `ALTER TABLE ${s}."AlertChange" ADD COLUMN IF NOT EXISTS seen boolean NOT NULL DEFAULT false,
       ADD COLUMN IF NOT EXISTS archived boolean NOT NULL DEFAULT false`,
    // Unread and unseen counts by type come from this index alone (an alert read is also
    // seen, so unseen is a subset of unread; archived alerts count in neither); marking all
    // read finds its rows through it too (all: of the list, not the archived). The list,
    // archived or not, has its own. (With archived as a key column instead of in the
    // predicate, the planner preferred the ("userId", "changedTxid") index for the counts.)
    `CREATE INDEX IF NOT EXISTS "AlertChange_userId_counts_idx" ON ${s}."AlertChange" ("userId", type, seen) WHERE NOT read AND NOT archived`,
    `CREATE INDEX IF NOT EXISTS "AlertChange_userId_list_idx" ON ${s}."AlertChange" ("userId", archived, "createdAt" DESC, id DESC)`,
    ...['AlertChange_userId_type_unread_idx', 'AlertChange_userId_type_counts_idx', 'AlertChange_userId_createdAt_idx'].map((i) => `DROP INDEX IF EXISTS ${s}.${JSON.stringify(i)}`),
    // A user's muted types: not streamed, not counted, not listed unless asked for by type. A
    // change is stamped like an alert's, so it streams to the user's tabs in order.
    `CREATE TABLE IF NOT EXISTS ${s}.preference (
       "userId"      text PRIMARY KEY CHECK (length("userId") <= 1000),
       muted         text[] NOT NULL DEFAULT '{}',
       "changedTxid" xid8 NOT NULL DEFAULT pg_current_xact_id()
     )`,
    `CREATE INDEX IF NOT EXISTS preference_changedTxid_idx ON ${s}.preference ("changedTxid")`,
    // The NOTIFY of a state change, on the channel the triggers use now (pgbell.install).
    `CREATE OR REPLACE FUNCTION ${s}.pgbell_state_changed(n bigint) RETURNS bigint LANGUAGE plpgsql ${definer} AS ${quoted(`
     BEGIN
       IF n > 0 THEN PERFORM ${s}.pgbell_notify_change((SELECT channel FROM ${s}.install)); END IF;
       RETURN n;
     END `)}`,
    // Signatures of before p_limit: a call would be ambiguous with both.
    ...['mark_seen(text, text[])', 'archive(text, text[], boolean)', 'unarchive(text, text[])'].map((f) => `DROP FUNCTION IF EXISTS ${s}.${f}`),
    // NULL ids: every alert of the user's that is not archived.
    stateFunction(s, definer, quoted, 'mark_seen(p_user text, p_ids text[], p_limit int DEFAULT NULL)', 'seen = true',
      `NOT seen AND NOT read AND (CASE WHEN p_ids IS NULL THEN NOT archived ELSE id = ANY(p_ids) END)`),
    // NULL ids: all of the user's alerts, or with p_only_read every read one.
    stateFunction(s, definer, quoted, 'archive(p_user text, p_ids text[], p_only_read boolean DEFAULT false, p_limit int DEFAULT NULL)', 'archived = true',
      `NOT archived AND (p_ids IS NULL OR id = ANY(p_ids)) AND (read OR NOT p_only_read)`),
    stateFunction(s, definer, quoted, 'unarchive(p_user text, p_ids text[], p_limit int DEFAULT NULL)', 'archived = false', `archived AND id = ANY(p_ids)`),
    // The whole set, sorted and without repeats; a set equal to the stored one changes nothing.
    `CREATE OR REPLACE FUNCTION ${s}.set_muted(p_user text, p_types text[]) RETURNS bigint LANGUAGE plpgsql ${definer} AS ${quoted(`
     DECLARE n bigint;
     BEGIN
       INSERT INTO ${s}.preference AS p ("userId", muted, "changedTxid")
       VALUES (p_user, ARRAY(SELECT DISTINCT t FROM unnest(coalesce(p_types, '{}')) t ORDER BY t), pg_current_xact_id())
       ON CONFLICT ("userId") DO UPDATE SET muted = excluded.muted, "changedTxid" = excluded."changedTxid"
        WHERE p.muted IS DISTINCT FROM excluded.muted;
       GET DIAGNOSTICS n = ROW_COUNT;
       RETURN ${s}.pgbell_state_changed(n);
     END `)}`,
  ];
}

/**
 * A state change of the user's alerts matching `where`: at most p_limit of them (NULL: all), in
 * key order, skipping any row a writer holds locked right now. The triggers of the app's table
 * lock these rows when a writer updates or deletes an alert: waiting for them would make the
 * state change wait on the writer, and holding them while waiting on another would let the
 * writer deadlock and fail. So a state change never waits: what it skips is left for the next
 * call (the count says how many changed; POST /alerts/… calls again until nothing is left).
 */
function stateFunction(s: string, definer: string, quoted: (body: string) => string, signature: string, set: string, where: string): string {
  return `CREATE OR REPLACE FUNCTION ${s}.${signature} RETURNS bigint LANGUAGE plpgsql ${definer} AS ${quoted(`
     DECLARE n bigint;
     BEGIN
       WITH picked AS (
         SELECT key FROM ${s}."AlertChange" WHERE "userId" = p_user AND ${where}
          ORDER BY key LIMIT p_limit FOR UPDATE SKIP LOCKED
       )
       UPDATE ${s}."AlertChange" c SET ${set}, "changedTxid" = pg_current_xact_id() FROM picked WHERE c.key = picked.key;
       GET DIAGNOSTICS n = ROW_COUNT;
       RETURN ${s}.pgbell_state_changed(n);
     END `)}`;
}
