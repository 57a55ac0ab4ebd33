-- Revoking sessions from SQL: a row here means "refuse every token of this user issued before
-- `before`". The trigger tells the daemons, by the same NOTIFY channel as alerts, so
--   INSERT INTO pgbell_revocation ("userId") VALUES ('user-1');
-- typed in psql closes that user's open sockets at once (close code 4403), and the daemon
-- checks this table whenever a token is presented.
CREATE TABLE pgbell_revocation (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  "userId"    text NOT NULL CHECK (length("userId") <= 1000),
  before      timestamptz NOT NULL DEFAULT now(),
  "createdAt" timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pgbell_revocation_user_idx ON pgbell_revocation ("userId", before DESC);

CREATE FUNCTION tg_revocation__notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(TG_ARGV[0], json_build_object(
    'revoke', NEW."userId",
    'before', floor(extract(epoch FROM NEW.before))::bigint::text)::text);
  RETURN NULL;
END
$$;

-- Same channel as the alert triggers (kept in step by `pgbell migrate`).
DO $$
DECLARE
  channel text := (
    SELECT split_part(encode(t.tgargs, 'escape'), '\000', 1) FROM pg_trigger t
     WHERE t.tgrelid = '"Alert"'::regclass AND t.tgname = '_900_notify');
BEGIN
  EXECUTE format('CREATE TRIGGER _900_notify AFTER INSERT ON pgbell_revocation
                    FOR EACH ROW EXECUTE FUNCTION tg_revocation__notify(%L)', channel);
END
$$;
