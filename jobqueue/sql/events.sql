-- events.sql: the event log and its live notification.
--
-- Owns:      NOTIFY for every event row, and the replay query of the SSE feed.
-- Public:    events_since(actor, after_id, organization, job_id, max_rows)  -- replay, in id order
-- Internal:  _tg_event__after_insert  -- pg_notify('jobqueue_events', small JSON payload) per
--                                       row, from one call per statement
-- Channel:   jobqueue_events; payload {"id", "org_id", "org", "job", "type", "data", "at"}, sent
--            at commit, in commit order. A reader resumes from the table by id.
-- Replay:    ids are taken at insert and seen at commit, so a lower id can commit after a
--            higher one: a reader resuming strictly after the last id it saw can miss an event
--            of a transaction that was still open. event.xact_id records the writing
--            transaction for a replay ordered by commit horizon instead.
-- States:    none.
-- Locks:     none.
-- Raises:    JQV03 bad argument, JQA02 forbidden.
-- Events:    this file sends them; lifecycle.sql and worker.sql write the rows.

CREATE OR REPLACE FUNCTION jobqueue._tg_event__after_insert() RETURNS trigger
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog
AS $$
#variable_conflict use_column
BEGIN
    -- One trigger call per statement, not per row: a batch of transitions writes its events
    -- in one INSERT, and their notifications go out in id order.
    PERFORM pg_notify('jobqueue_events', json_build_object(
        'id', n.id, 'org_id', n.organization_id, 'org', o.name, 'job', n.job_id,
        'type', n.type, 'data', n.data, 'at', n.created_at)::text)
    FROM new_rows AS n
    JOIN jobqueue.organization AS o ON o.id = n.organization_id
    ORDER BY n.id;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS tg_event__after_insert ON jobqueue.event;
CREATE TRIGGER tg_event__after_insert
    AFTER INSERT ON jobqueue.event
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobqueue._tg_event__after_insert();

-- A short-lived signature had a sixth argument: drop it so calls are not ambiguous.
DROP FUNCTION IF EXISTS jobqueue.events_since(text, bigint, text, bigint, integer, boolean);

CREATE OR REPLACE FUNCTION jobqueue.events_since(
    actor text DEFAULT NULL,
    after_id bigint DEFAULT 0,
    organization text DEFAULT NULL,
    job_id bigint DEFAULT NULL,
    max_rows integer DEFAULT 1000
) RETURNS TABLE (
    id bigint, org_id bigint, org text, job bigint, type text, data jsonb, at timestamptz
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog
AS $$
#variable_conflict use_column
DECLARE
    v_visible bigint[] := jobqueue._visible_organizations(actor);
    v_org_id bigint;
BEGIN
    IF max_rows IS NULL OR max_rows NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'max_rows must be between 1 and 10000' USING ERRCODE = 'JQV03';
    END IF;
    IF events_since.organization IS NOT NULL THEN
        v_org_id := jobqueue._require_organization(actor, events_since.organization);
    END IF;
    RETURN QUERY
        SELECT e.id, e.organization_id, o.name, e.job_id, e.type, e.data, e.created_at
        FROM jobqueue.event AS e
        JOIN jobqueue.organization AS o ON o.id = e.organization_id
        WHERE e.id > coalesce(after_id, 0)
          AND (v_visible IS NULL OR e.organization_id = ANY (v_visible))
          AND (v_org_id IS NULL OR e.organization_id = v_org_id)
          AND (events_since.job_id IS NULL OR e.job_id = events_since.job_id)
        ORDER BY e.id
        LIMIT max_rows;
END
$$;

-- \df+ explains each public function with its header line.
COMMENT ON FUNCTION jobqueue.events_since(text, bigint, text, bigint, integer) IS
    'events_since(actor, after_id, organization, job_id, max_rows): replay of the event log after an id, in id order, limited to what the actor may see.';
