-- bulk.sql: set-based actions on every job matching a filter.
--
-- Public:    cancel_jobs(actor, organization, status, job_type)  -- returns (canceled, cancel_requested)
--            retry_jobs(actor, organization, status, job_type)   -- returns retried
--            Filters: NULL matches everything the actor may see; organization narrows to one
--            the actor may use (JQA02 otherwise); status must be a job status name.
-- States:    cancel_jobs: waiting|queued|retrying -> canceled in ONE UPDATE (the lifecycle trigger
--            validates and records each change); running jobs get cancel_requested, their vehicles
--            abort_requested, and one cancel_requested event each, as cancel_job does.
--            retry_jobs: dead|canceled -> queued in one UPDATE, with a fresh retry budget; a job
--            whose identical twin is active is left alone (one active job per dedup hash).
-- Locks:     the matched job rows, in id order, before they change.
-- Raises:    JQA02 organization not accessible, JQV03 bad status, JQC01 retry_jobs racing a
--            submit of an identical job.
-- Events:    through the lifecycle trigger (canceled, retried) plus cancel_requested.

CREATE OR REPLACE FUNCTION jobqueue._bulk_filter(
    p_actor text, p_organization text, p_status text
) RETURNS TABLE (org_ids bigint[], status jobqueue.job_status)
LANGUAGE plpgsql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_orgs bigint[];
    v_status jobqueue.job_status;
BEGIN
    IF p_status IS NOT NULL THEN
        IF p_status NOT IN (SELECT unnest(enum_range(NULL::jobqueue.job_status))::text) THEN
            RAISE EXCEPTION 'unknown status "%"', left(p_status, 50) USING ERRCODE = 'JQV03';
        END IF;
        v_status := p_status::jobqueue.job_status;
    END IF;
    IF p_organization IS NOT NULL THEN
        v_orgs := ARRAY[jobqueue._require_organization(p_actor, p_organization)];
    ELSE
        v_orgs := coalesce(jobqueue._visible_organizations(p_actor),
                           ARRAY(SELECT id FROM jobqueue.organization));
    END IF;
    RETURN QUERY SELECT v_orgs, v_status;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.cancel_jobs(
    actor text DEFAULT NULL,
    organization text DEFAULT NULL,
    status text DEFAULT NULL,
    job_type text DEFAULT NULL
) RETURNS TABLE (canceled bigint, cancel_requested bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_orgs bigint[];
    v_status jobqueue.job_status;
    v_reason text := 'canceled by ' || coalesce(cancel_jobs.actor, 'a service');
    v_canceled bigint;
    v_requested bigint;
    v_logged bigint;
BEGIN
    SELECT f.org_ids, f.status INTO v_orgs, v_status
    FROM jobqueue._bulk_filter(cancel_jobs.actor, cancel_jobs.organization, cancel_jobs.status) AS f;

    -- The matched jobs are locked in id order first, as every statement that locks several
    -- jobs does: an UPDATE locks rows in whatever order its plan reads them, and two
    -- cancels (or a cancel and a claim) reading the same jobs in different orders would
    -- deadlock. A job another statement ended while this one waited for its lock is
    -- rechecked and skipped.
    UPDATE jobqueue.job AS j
    SET status = 'canceled', finished_at = now(), next_retry_at = NULL,
        last_error = v_reason, updated_at = now()
    WHERE j.id IN (
        SELECT c.id FROM jobqueue.job AS c
        WHERE c.organization_id = ANY (v_orgs)
          AND c.status IN ('waiting', 'queued', 'retrying')
          AND (v_status IS NULL OR c.status = v_status)
          AND (cancel_jobs.job_type IS NULL OR c.job_type = cancel_jobs.job_type)
        ORDER BY c.id
        FOR UPDATE)
      AND j.status IN ('waiting', 'queued', 'retrying');
    GET DIAGNOSTICS v_canceled = ROW_COUNT;

    -- Running jobs end when their worker acknowledges; the vehicle's abort flag tells it now.
    WITH requested AS (
        UPDATE jobqueue.job AS j
        SET cancel_requested = true, updated_at = now()
        WHERE j.id IN (
            SELECT c.id FROM jobqueue.job AS c
            WHERE c.organization_id = ANY (v_orgs)
              AND c.status = 'running' AND NOT c.cancel_requested
              AND (v_status IS NULL OR v_status = 'running')
              AND (cancel_jobs.job_type IS NULL OR c.job_type = cancel_jobs.job_type)
            ORDER BY c.id
            FOR UPDATE)  -- in id order, as above
          AND j.status = 'running' AND NOT j.cancel_requested
        RETURNING j.id, j.organization_id, j.attempt, j.attempt_vehicle_id
    ), aborted AS (
        -- the running attempt's vehicle, on its job (worker.sql)
        UPDATE procrastinate.procrastinate_jobs AS p SET abort_requested = true
        FROM requested AS r
        WHERE p.id = r.attempt_vehicle_id AND p.status = 'doing'
    ), logged AS (
        SELECT jobqueue._log_events(
                   array_agg(r.organization_id ORDER BY r.id), array_agg(r.id ORDER BY r.id),
                   array_fill('cancel_requested'::text, ARRAY[count(*)::integer]),
                   array_agg(jsonb_build_object('status', 'running', 'attempt', r.attempt,
                                                'by', cancel_jobs.actor) ORDER BY r.id))
        FROM requested AS r
        HAVING count(*) > 0
    )
    SELECT (SELECT count(*) FROM requested), (SELECT count(*) FROM logged)
    INTO v_requested, v_logged;

    RETURN QUERY SELECT v_canceled, v_requested;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.retry_jobs(
    actor text DEFAULT NULL,
    organization text DEFAULT NULL,
    status text DEFAULT NULL,
    job_type text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_orgs bigint[];
    v_status jobqueue.job_status;
    v_retried bigint;
BEGIN
    SELECT f.org_ids, f.status INTO v_orgs, v_status
    FROM jobqueue._bulk_filter(retry_jobs.actor, retry_jobs.organization, retry_jobs.status) AS f;

    -- Dedup: a job whose identical twin (same hash) is active stays as it is, and of several
    -- ended twins only the newest is retried, so at most one copy per hash is active.
    BEGIN
        UPDATE jobqueue.job AS j
        SET status = 'queued', retry_base = j.attempt, finished_at = NULL, cancel_requested = false,
            run_at = now(), progress = NULL, progress_message = NULL, result = NULL,
            updated_at = now()
        -- locked in id order, as in cancel_jobs
        WHERE j.id IN (SELECT l.id FROM jobqueue.job AS l WHERE l.id IN (
            SELECT DISTINCT ON (coalesce(c.job_hash, int8send(c.id))) c.id
            FROM jobqueue.job AS c
            WHERE c.organization_id = ANY (v_orgs)
              AND c.status IN ('dead', 'canceled')
              AND (v_status IS NULL OR c.status = v_status)
              AND (retry_jobs.job_type IS NULL OR c.job_type = retry_jobs.job_type)
              AND (c.job_hash IS NULL OR NOT EXISTS (
                  SELECT FROM jobqueue.job AS a
                  WHERE a.job_hash = c.job_hash
                    AND a.status IN ('waiting', 'queued', 'running', 'retrying')))
              -- A job whose dependencies have not all completed stays as it is (the lifecycle
              -- trigger refuses to run it ahead of them).
              AND NOT EXISTS (
                  SELECT FROM jobqueue.job_dependency AS d
                  JOIN jobqueue.job AS dep ON dep.id = d.depends_on_id
                  WHERE d.job_id = c.id AND dep.status <> 'completed')
            ORDER BY coalesce(c.job_hash, int8send(c.id)), c.id DESC)
            ORDER BY l.id
            FOR UPDATE)
          AND j.status IN ('dead', 'canceled');
        GET DIAGNOSTICS v_retried = ROW_COUNT;
    EXCEPTION WHEN unique_violation THEN
        -- An identical job was submitted while this statement ran.
        RAISE EXCEPTION 'retry refused: an identical job became active meanwhile; try again'
            USING ERRCODE = 'JQC01';
    END;
    RETURN v_retried;
END
$$;
