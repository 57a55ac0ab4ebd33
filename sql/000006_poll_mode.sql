-- Poll mode (PGBELL_MODE=poll): the triggers keep doing their bookkeeping (changedTxid,
-- tombstones) but send no NOTIFY when their channel argument is empty. A transaction that
-- queues a NOTIFY holds a cluster-wide lock from then until its commit is flushed, so writers
-- that notify cannot group-commit; in poll mode the daemon finds new changes by reading
-- "changedTxid" instead. `pgbell migrate` with PGBELL_MODE=poll sets the empty channel.

CREATE OR REPLACE FUNCTION tg_alert__notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_ARGV[0] <> '' THEN
    PERFORM pg_notify(TG_ARGV[0],
      '{"txid":"' || pg_current_xact_id()::text || '","xmin":"' || pg_snapshot_xmin(pg_current_snapshot())::text || '"}');
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION tg_alert__deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "AlertTombstone" (id, "userId") SELECT id, "userId" FROM old_rows;
  IF FOUND AND TG_ARGV[0] <> '' THEN
    PERFORM pg_notify(TG_ARGV[0],
      '{"txid":"' || pg_current_xact_id()::text || '","xmin":"' || pg_snapshot_xmin(pg_current_snapshot())::text || '"}');
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION tg_revocation__notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_ARGV[0] <> '' THEN
    PERFORM pg_notify(TG_ARGV[0], json_build_object(
      'revoke', NEW."userId",
      'before', floor(extract(epoch FROM NEW.before))::bigint::text)::text);
  END IF;
  RETURN NULL;
END
$$;
