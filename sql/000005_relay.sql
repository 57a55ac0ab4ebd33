-- Redis fan-out (PGBELL_FANOUT=redis): the relay's progress, so a node that takes over as relay
-- publishes what committed since the previous relay last published. Every transaction below
-- "relayTxid" has been published.
ALTER TABLE pgbell_state ADD COLUMN "relayTxid" xid8 NULL;
