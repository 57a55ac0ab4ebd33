-- Lose nothing: UPDATE and DELETE stream like INSERT, and every change can be found again
-- from a cursor after a client, the daemon or the listener went away.
--
-- A cursor says which transactions a client has seen: every transaction id below a horizon,
-- plus the few at or above it that it was sent. The horizon comes from
-- pg_snapshot_xmin(pg_current_snapshot()): every transaction below it had finished when the
-- snapshot was taken, so anything not yet seen is at or above it. Transaction ids are handed
-- out at a transaction's first write but commit in any order; the horizon is what makes a
-- resume re-read a transaction that was still open when a later one was delivered. Nothing
-- here takes a lock another writer could wait on: no counter row, no sequence gap check.

-- The transaction that last inserted or updated the row. "txid" stays the inserting one, so
-- the daemon can tell a new alert from a change to one the client already has.
ALTER TABLE "Alert" ADD COLUMN "changedTxid" xid8;
UPDATE "Alert" SET "changedTxid" = "txid";
ALTER TABLE "Alert"
  ALTER COLUMN "changedTxid" SET DEFAULT pg_current_xact_id(),
  ALTER COLUMN "changedTxid" SET NOT NULL;

-- Live reads look rows up by transaction; resumes by user and transaction.
CREATE INDEX "Alert_changedTxid_idx" ON "Alert" ("changedTxid");
CREATE INDEX "Alert_userId_changedTxid_idx" ON "Alert" ("userId", "changedTxid");
-- Superseded: rows are found by "changedTxid" now.
DROP INDEX "Alert_txid_seq_idx";

CREATE FUNCTION tg_alert__changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW."changedTxid" := pg_current_xact_id();
  RETURN NEW;
END
$$;

-- Only a real change counts: `UPDATE "Alert" SET read = true` over rows already read does not
-- make every tab re-render them.
CREATE TRIGGER _100_changed
  BEFORE UPDATE ON "Alert"
  FOR EACH ROW
  WHEN (OLD.* IS DISTINCT FROM NEW.*)
  EXECUTE FUNCTION tg_alert__changed();

-- A deleted row cannot be re-read, so its id is kept here for resumes. The daemon prunes old
-- entries; a cursor older than the pruning horizon gets {"type":"reset"}.
CREATE TABLE "AlertTombstone" (
  id          text NOT NULL,
  "userId"    text NOT NULL,
  txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
  "deletedAt" timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX "AlertTombstone_txid_idx" ON "AlertTombstone" (txid);
CREATE INDEX "AlertTombstone_userId_txid_idx" ON "AlertTombstone" ("userId", txid);

-- One row: what identifies this database in a cursor, and how far tombstones were pruned.
CREATE TABLE pgbell_state (
  one          boolean PRIMARY KEY DEFAULT true CHECK (one),
  "databaseId" text NOT NULL DEFAULT substr(md5(gen_random_uuid()::text), 1, 8),
  -- Cursors whose horizon is at or below this may have missed a pruned delete.
  "prunedTxid" xid8 NOT NULL DEFAULT '0'
);
INSERT INTO pgbell_state DEFAULT VALUES;

-- The payload now also carries the writer's snapshot horizon. Every transaction below it
-- finished before this one commits, so its notification (if any) is already ahead of this one
-- in the queue: once the daemon has this notification it has all of theirs, and can move
-- cursors forward. Still ~50 bytes, whatever the rows hold.
CREATE OR REPLACE FUNCTION tg_alert__notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(TG_ARGV[0],
    '{"txid":"' || pg_current_xact_id()::text || '","xmin":"' || pg_snapshot_xmin(pg_current_snapshot())::text || '"}');
  RETURN NULL;
END
$$;


CREATE FUNCTION tg_alert__deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "AlertTombstone" (id, "userId") SELECT id, "userId" FROM old_rows;
  IF FOUND THEN
    PERFORM pg_notify(TG_ARGV[0],
      '{"txid":"' || pg_current_xact_id()::text || '","xmin":"' || pg_snapshot_xmin(pg_current_snapshot())::text || '"}');
  END IF;
  RETURN NULL;
END
$$;

-- UPDATE now notifies too, and DELETE gets its own trigger (transition tables need one event
-- per trigger). Both keep the channel the existing trigger was given by `pgbell migrate`, so
-- the daemon does not miss anything while this migration is applied.
DO $$
DECLARE
  channel text := (
    SELECT split_part(encode(t.tgargs, 'escape'), '\000', 1) FROM pg_trigger t
     WHERE t.tgrelid = '"Alert"'::regclass AND t.tgname = '_900_notify');
BEGIN
  EXECUTE format('CREATE OR REPLACE TRIGGER _900_notify AFTER INSERT OR UPDATE ON "Alert"
                    FOR EACH STATEMENT EXECUTE FUNCTION tg_alert__notify(%L)', channel);
  EXECUTE format('CREATE TRIGGER _900_notify_delete AFTER DELETE ON "Alert"
                    REFERENCING OLD TABLE AS old_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION tg_alert__deleted(%L)', channel);
END
$$;
