-- web.sql: what the HTTP layer reads that no other function answers.
--
-- Public:    job_counts(actor)  -- live jobs (waiting, queued, running, retrying) by
--            organization, job type, queue and status, of the organizations the actor may
--            see; feeds the Prometheus exposition at /metrics.
-- Reads:     live jobs through job_active_idx, so the cost follows the backlog, not history.
-- Locks:     none.
-- Raises:    nothing of its own.
-- Events:    none.

CREATE OR REPLACE FUNCTION jobqueue.job_counts(actor text DEFAULT NULL)
RETURNS TABLE (organization text, job_type text, queue text, status text, jobs bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog
AS $$
#variable_conflict use_column
DECLARE
    v_visible bigint[] := jobqueue._visible_organizations(actor);
BEGIN
    RETURN QUERY
        SELECT o.name, j.job_type, j.queue, j.status::text, count(*)
        FROM jobqueue.job AS j
        JOIN jobqueue.organization AS o ON o.id = j.organization_id
        WHERE j.status IN ('waiting', 'queued', 'running', 'retrying')
          AND (v_visible IS NULL OR j.organization_id = ANY (v_visible))
        GROUP BY 1, 2, 3, 4
        ORDER BY 1, 2, 3, 4;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.latest_event_id() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog
AS $$
    SELECT coalesce(max(e.id), 0) FROM jobqueue.event AS e
$$;
