-- Moving an alert to another user ("userId" changed) is a delete for the old owner and a new
-- alert for the new one. Without this the old owner's tabs kept it (nothing told them), and
-- the new owner got an "update" of an alert it never had.
--
-- The row keeps its id; the old owner gets a tombstone in this transaction (read live and on
-- resume like any delete), and the row's inserting transaction becomes this one, so the new
-- owner's tabs get it as a notification.
CREATE OR REPLACE FUNCTION tg_alert__changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW."changedTxid" := pg_current_xact_id();
  IF NEW."userId" IS DISTINCT FROM OLD."userId" THEN
    NEW.txid := pg_current_xact_id();
    INSERT INTO "AlertTombstone" (id, "userId") VALUES (OLD.id, OLD."userId");
  END IF;
  RETURN NEW;
END
$$;
