-- Events written per statement: one row holds a statement's events of one organization.
--
-- A claim or a finish of ten jobs wrote ten event rows, each with its index entries; a
-- batch submit of a thousand wrote a thousand. Now each writes one row per organization
-- (at most 1,024 events to a row), and the events keep their own ids: event i (from 1) of
-- a row has the id first_id + i - 1. New rows take first_id from event_batch_seq times
-- 1,024, so the rows' id ranges never overlap and an id names one event for good: the
-- feed's ids, Last-Event-ID and events_since's after_id mean what they meant.
--
-- jobqueue.event stays, as a view with the old columns, for psql and for readers that
-- want one row per event; the engine's own readers read event_batch (events.sql).
-- Existing events move over one to a row, with their ids.

CREATE TABLE jobqueue.event_batch (
    first_id bigint PRIMARY KEY,
    organization_id bigint NOT NULL,
    xact_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    created_at timestamptz NOT NULL DEFAULT now(),
    job_ids bigint[] NOT NULL,   -- NULL elements: events of no job (schedules)
    types text[] NOT NULL,
    data jsonb[] NOT NULL,
    CONSTRAINT event_batch_shape_check CHECK (
        cardinality(types) BETWEEN 1 AND 1024
        AND cardinality(job_ids) = cardinality(types)
        AND cardinality(data) = cardinality(types))
);
CREATE INDEX event_batch_org_idx ON jobqueue.event_batch (organization_id, first_id);

CREATE SEQUENCE jobqueue.event_batch_seq;

INSERT INTO jobqueue.event_batch (
    first_id, organization_id, xact_id, created_at, job_ids, types, data)
SELECT e.id, e.organization_id, e.xact_id, e.created_at,
       ARRAY[e.job_id], ARRAY[e.type], ARRAY[e.data]
FROM jobqueue.event AS e;

SELECT setval('jobqueue.event_batch_seq',
              coalesce((SELECT max(id) FROM jobqueue.event), 0) / 1024 + 1, false);

DROP TABLE jobqueue.event;

CREATE VIEW jobqueue.event AS
    SELECT b.first_id + u.position - 1 AS id, b.organization_id, u.job_id, u.type, u.data,
           b.created_at, b.xact_id
    FROM jobqueue.event_batch AS b
    CROSS JOIN LATERAL unnest(b.job_ids, b.types, b.data)
        WITH ORDINALITY AS u (job_id, type, data, position);

REVOKE ALL ON jobqueue.event_batch, jobqueue.event FROM PUBLIC;
REVOKE ALL ON SEQUENCE jobqueue.event_batch_seq FROM PUBLIC;
