-- 0002: the transaction that wrote each event.
--
-- Event ids are taken at insert but become visible at commit, so a lower id can appear after a
-- higher one. events_since hands out only events older than every transaction still in flight,
-- so a reader resuming "after the last id it saw" never skips one.

ALTER TABLE jobqueue.event
    ADD COLUMN xact_id xid8 NOT NULL DEFAULT pg_current_xact_id();
