-- How a committed alert reaches the daemon.
--
-- Each row remembers the transaction that wrote it ("txid", xid8). The trigger sends one
-- small NOTIFY per statement carrying only that transaction id, and the daemon re-reads
-- the rows with `WHERE "txid" = $1`. Why not put the row in the payload:
--   * Postgres caps a NOTIFY payload below 8000 bytes and pg_notify() raising inside a
--     trigger aborts the writer's INSERT. The payload here is ~30 bytes whatever the row
--     holds, so the writer can never fail because of us, and a 1 MB alert arrives whole.
--   * Identical notifications in one transaction are folded into one by Postgres, so a
--     statement inserting 10,000 rows costs one NOTIFY, not 10,000.
--   * NOTIFY is only delivered after COMMIT, and a rolled-back transaction sends nothing.
--
-- The channel is the trigger's argument. `pgbell migrate` rewrites it to PGBELL_CHANNEL
-- (default 'pgbell', the same default as src/config.ts).

ALTER TABLE "Alert" ADD COLUMN "txid" xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX "Alert_txid_idx" ON "Alert" ("txid");

CREATE FUNCTION tg_alert__notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(TG_ARGV[0], json_build_object('txid', pg_current_xact_id()::text)::text);
  RETURN NULL;
END
$$;

CREATE TRIGGER _900_notify
  AFTER INSERT ON "Alert"
  FOR EACH STATEMENT
  EXECUTE FUNCTION tg_alert__notify('pgbell');
