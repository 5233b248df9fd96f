-- queries.sql: reading jobs and their attempts, always through the access rule.
--
-- Public:    get_job(job_id, actor)
--            list_jobs(actor, organization, status, job_type, created_after, created_before,
--                      before_id, page_size)   -- newest first, keyset pagination on id
--            job_attempts(job_id, actor)       -- the execution log of one job: its ended
--                                                 attempts' rows and the running attempt,
--                                                 read from the job row (worker.sql)
-- States:    reads all.
-- Locks:     none.
-- Raises:    JQN01 job not visible, JQA02 organization not accessible, JQV03 bad argument.
-- Events:    none.

CREATE OR REPLACE FUNCTION jobqueue._visible_job_id(p_job_id bigint, p_actor text) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_org_id bigint;
BEGIN
    SELECT organization_id INTO v_org_id FROM jobqueue.job WHERE id = p_job_id;
    IF NOT FOUND OR NOT jobqueue._can_access_id(p_actor, v_org_id) THEN
        RAISE EXCEPTION 'job % not found', p_job_id USING ERRCODE = 'JQN01';
    END IF;
    RETURN p_job_id;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.get_job(job_id bigint, actor text DEFAULT NULL)
RETURNS jobqueue.job_info
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT * FROM jobqueue._job_infos(ARRAY[jobqueue._visible_job_id(get_job.job_id, get_job.actor)])
$$;

CREATE OR REPLACE FUNCTION jobqueue.list_jobs(
    actor text DEFAULT NULL,
    organization text DEFAULT NULL,
    status text DEFAULT NULL,
    job_type text DEFAULT NULL,
    created_after timestamptz DEFAULT NULL,
    created_before timestamptz DEFAULT NULL,
    before_id bigint DEFAULT NULL,
    page_size integer DEFAULT 50
) RETURNS SETOF jobqueue.job_info
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_visible bigint[];
    v_org_id bigint;
    v_status jobqueue.job_status;
BEGIN
    IF page_size IS NULL OR page_size NOT BETWEEN 1 AND 500 THEN
        RAISE EXCEPTION 'page_size must be between 1 and 500, got %', quote_nullable(page_size)
            USING ERRCODE = 'JQV03';
    END IF;
    IF list_jobs.status IS NOT NULL THEN
        IF list_jobs.status NOT IN (SELECT unnest(enum_range(NULL::jobqueue.job_status))::text) THEN
            RAISE EXCEPTION 'unknown status "%"', left(list_jobs.status, 50)
                USING ERRCODE = 'JQV03';
        END IF;
        v_status := list_jobs.status::jobqueue.job_status;
    END IF;
    IF list_jobs.organization IS NOT NULL THEN
        v_org_id := jobqueue._require_organization(actor, list_jobs.organization);
    ELSE
        v_visible := jobqueue._visible_organizations(actor);
    END IF;
    RETURN QUERY
        SELECT i.* FROM jobqueue._job_infos(ARRAY(
            SELECT j.id FROM jobqueue.job AS j
            WHERE (v_org_id IS NULL OR j.organization_id = v_org_id)
              AND (v_visible IS NULL OR j.organization_id = ANY (v_visible))
              AND (v_status IS NULL OR j.status = v_status)
              AND (list_jobs.job_type IS NULL OR j.job_type = list_jobs.job_type)
              AND (created_after IS NULL OR j.created_at >= created_after)
              AND (created_before IS NULL OR j.created_at < created_before)
              AND (before_id IS NULL OR j.id < before_id)
            ORDER BY j.id DESC
            LIMIT page_size)) AS i;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.job_attempts(job_id bigint, actor text DEFAULT NULL)
RETURNS TABLE (
    attempt integer, organization text, job_type text, worker_id bigint,
    started_at timestamptz, finished_at timestamptz, duration_ms double precision,
    outcome jobqueue.attempt_outcome, error text, traceback text, late_outcome jsonb
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    -- The ended attempts' rows, then the running one, which lives on its job (worker.sql).
    WITH v AS (
        SELECT jobqueue._visible_job_id(job_attempts.job_id, job_attempts.actor) AS id
    ), log AS (
        SELECT a.attempt, a.organization_id, a.job_type, a.worker_id, a.started_at,
               a.finished_at, a.outcome, a.error, a.traceback, a.late_outcome
        FROM v JOIN jobqueue.attempt AS a ON a.job_id = v.id
        UNION ALL
        SELECT j.attempt, j.organization_id, j.job_type, j.attempt_worker_id,
               j.attempt_started_at, NULL, NULL, NULL, NULL, NULL
        FROM v JOIN jobqueue.job AS j ON j.id = v.id
        WHERE j.status = 'running'
    )
    SELECT l.attempt, o.name, l.job_type, l.worker_id, l.started_at, l.finished_at,
           extract(epoch FROM l.finished_at - l.started_at) * 1000, l.outcome, l.error,
           l.traceback, l.late_outcome
    FROM log AS l
    JOIN jobqueue.organization AS o ON o.id = l.organization_id
    ORDER BY l.attempt
$$;

-- \df+ explains each public function with its header line.
COMMENT ON FUNCTION jobqueue.get_job(bigint, text) IS
    'get_job(job_id, actor): one job; JQN01 when missing or not visible to the actor.';
COMMENT ON FUNCTION jobqueue.list_jobs(text, text, text, text, timestamp with time zone, timestamp with time zone, bigint, integer) IS
    'list_jobs(actor, organization, status, job_type, created_after, created_before, before_id, page_size): newest first, keyset pagination on id.';
COMMENT ON FUNCTION jobqueue.job_attempts(bigint, text) IS
    'job_attempts(job_id, actor): the execution log of one job.';
