-- web.sql: what the HTTP layer reads that no other function answers.
--
-- Public:    job_counts(actor)  -- live jobs (waiting, queued, running, retrying) by
--            organization, job type, queue and status, of the organizations the actor may
--            see; feeds the Prometheus exposition at /metrics.
--            latest_event_id()   -- where a new event hub starts reading
--            migration_status()  -- the migration numbers applied, for /healthz (a web process
--                                   connected as jobqueue_client cannot read the table)
-- Reads:     live jobs of each organization through job_org_status_id_idx, so the cost
--            follows the backlog, not history.
-- Locks:     none.
-- Raises:    nothing of its own.
-- Events:    none.

CREATE OR REPLACE FUNCTION jobqueue.job_counts(actor text DEFAULT NULL)
RETURNS TABLE (organization text, job_type text, queue text, status text, jobs bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_visible bigint[] := jobqueue._visible_organizations(actor);
BEGIN
    -- One index range per organization and live status; a filter on status alone would
    -- read every finished job too.
    RETURN QUERY
        SELECT o.name, j.job_type, j.queue, j.status::text, count(*)
        FROM jobqueue.organization AS o
        CROSS JOIN LATERAL (
            SELECT l.job_type, l.queue, l.status FROM jobqueue.job AS l
            WHERE l.organization_id = o.id
              AND l.status IN ('waiting', 'queued', 'running', 'retrying')
        ) AS j
        WHERE v_visible IS NULL OR o.id = ANY (v_visible)
        GROUP BY 1, 2, 3, 4
        ORDER BY 1, 2, 3, 4;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.latest_event_id() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    -- The rows' id ranges do not overlap (events.sql): the newest row holds the newest id.
    SELECT coalesce((SELECT b.first_id + cardinality(b.types) - 1 FROM jobqueue.event_batch AS b
                     ORDER BY b.first_id DESC LIMIT 1), 0)
$$;

CREATE OR REPLACE FUNCTION jobqueue.migration_status() RETURNS integer[]
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(m.number ORDER BY m.number), '{}') FROM jobqueue.migration AS m
$$;

COMMENT ON FUNCTION jobqueue.migration_status() IS
    'migration_status(): the numbers of the migrations applied (0 is procrastinate''s schema).';
