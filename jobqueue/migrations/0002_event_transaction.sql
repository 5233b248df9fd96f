-- 0002: the transaction that wrote each event.
--
-- Event ids are taken at insert but become visible at commit, so a lower id can appear after a
-- higher one. The writing transaction's id lets a replay order events by commit horizon
-- (everything older than pg_snapshot_xmin is final) instead of by id alone.

ALTER TABLE jobqueue.event
    ADD COLUMN xact_id xid8 NOT NULL DEFAULT pg_current_xact_id();
