-- workers.sql: the live workers, as the dashboard's workers page shows them.
--
-- Owns:      jobqueue.worker_info (migration worker_info): what each worker process is.
-- Public:    describe_worker(worker_id, host, pid, queues, concurrency)  -- worker side, once
--                                                                        -- per worker start
--            list_workers(actor)  -- live workers: heartbeat, host, pid, queues, concurrency,
--                                    and the running jobs the actor may see
-- States:    reads running jobs (their running attempts' facts: worker.sql).
-- Locks:     none beyond the upsert's row.
-- Raises:    JQV03 bad argument.
-- Events:    none.

CREATE OR REPLACE FUNCTION jobqueue.describe_worker(
    worker_id bigint, host text, pid integer, queues text[], concurrency integer
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF describe_worker.host IS NULL OR length(describe_worker.host) NOT BETWEEN 1 AND 255
       OR describe_worker.pid IS NULL OR describe_worker.concurrency IS NULL
       OR describe_worker.concurrency < 1 THEN
        RAISE EXCEPTION 'describe_worker needs a host (1-255 characters), a pid and a positive concurrency'
            USING ERRCODE = 'JQV03';
    END IF;
    -- A worker already pruned (its row gone) has nothing to describe.
    INSERT INTO jobqueue.worker_info AS w (worker_id, host, pid, queues, concurrency)
    SELECT p.id, describe_worker.host, describe_worker.pid, describe_worker.queues,
           describe_worker.concurrency
    FROM procrastinate.procrastinate_workers AS p WHERE p.id = describe_worker.worker_id
    ON CONFLICT (worker_id) DO UPDATE
        SET host = excluded.host, pid = excluded.pid, queues = excluded.queues,
            concurrency = excluded.concurrency;
END
$$;

-- The answer gained columns: drop the older shape once, so CREATE OR REPLACE can make this one.
DO $$
BEGIN
    IF to_regprocedure('jobqueue.list_workers(text)') IS NOT NULL AND NOT EXISTS (
        SELECT FROM pg_proc AS p
        WHERE p.oid = to_regprocedure('jobqueue.list_workers(text)')
          AND 'host' = ANY (p.proargnames)) THEN
        DROP FUNCTION jobqueue.list_workers(text);
    END IF;
END
$$;

-- Admins and services see every live worker; a member sees only workers running jobs of the
-- member's organizations, and only those jobs.
CREATE OR REPLACE FUNCTION jobqueue.list_workers(actor text DEFAULT NULL)
RETURNS TABLE (
    worker_id bigint, last_heartbeat timestamptz, host text, pid integer, queues text[],
    concurrency integer, started_at timestamptz, running jsonb
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_visible bigint[] := jobqueue._visible_organizations(list_workers.actor);
BEGIN
    RETURN QUERY
        WITH running AS (
            -- Running attempts live on their jobs (worker.sql): one range of
            -- job_org_status_id_idx per organization the actor may see.
            SELECT j.attempt_worker_id AS worker_id,
                   jsonb_agg(jsonb_build_object(
                       'job_id', j.id, 'attempt', j.attempt, 'job_type', j.job_type,
                       'organization', o.name, 'started_at', j.attempt_started_at,
                       'progress', j.progress) ORDER BY j.attempt_started_at, j.id) AS jobs
            FROM jobqueue.job AS j
            JOIN jobqueue.organization AS o ON o.id = j.organization_id
            WHERE j.organization_id = ANY (coalesce(v_visible,
                                                    ARRAY(SELECT x.id FROM jobqueue.organization AS x)))
              AND j.status = 'running'
            GROUP BY j.attempt_worker_id
        )
        SELECT w.id, w.last_heartbeat, i.host, i.pid, i.queues, i.concurrency, i.started_at,
               coalesce(r.jobs, '[]'::jsonb)
        FROM procrastinate_workers AS w
        LEFT JOIN jobqueue.worker_info AS i ON i.worker_id = w.id
        LEFT JOIN running AS r ON r.worker_id = w.id
        WHERE v_visible IS NULL OR r.jobs IS NOT NULL
        ORDER BY w.id;
END
$$;

-- \df+ explains each public function with its header line.
COMMENT ON FUNCTION jobqueue.describe_worker(bigint, text, integer, text[], integer) IS
    'describe_worker(worker_id, host, pid, queues, concurrency): what a worker process is; once per start.';
COMMENT ON FUNCTION jobqueue.list_workers(text) IS
    'list_workers(actor): live workers (heartbeat, host, pid, queues, concurrency) and the running jobs the actor may see.';
