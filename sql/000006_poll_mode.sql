-- Poll mode (PGBELL_MODE=poll): the triggers keep doing their bookkeeping (changedTxid,
-- tombstones) but send no NOTIFY when their channel argument is empty. A transaction that
-- queues a NOTIFY holds a cluster-wide lock from then until its commit is flushed, so writers
-- that notify cannot group-commit; in poll mode the daemon finds new changes by reading
-- "changedTxid" instead. `pgbell migrate` with PGBELL_MODE=poll sets the empty channel.

-- The one NOTIFY both alert triggers send: the writer's transaction id and snapshot horizon
-- (see 000003), or nothing when the channel is empty.
CREATE FUNCTION pgbell_notify_change(channel text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF channel <> '' THEN
    PERFORM pg_notify(channel,
      '{"txid":"' || pg_current_xact_id()::text || '","xmin":"' || pg_snapshot_xmin(pg_current_snapshot())::text || '"}');
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION tg_alert__notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgbell_notify_change(TG_ARGV[0]);
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION tg_alert__deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "AlertTombstone" (id, "userId") SELECT id, "userId" FROM old_rows;
  IF FOUND THEN
    PERFORM pgbell_notify_change(TG_ARGV[0]);
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
