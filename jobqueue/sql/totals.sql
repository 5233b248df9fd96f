-- totals.sql: monotonic totals for the Prometheus exposition, without a write per job.
--
-- Owns:      the rollup of what the cleanup deletes (jobqueue.metric_rollup, migration metric_rollup)
--            and the totals read by /metrics.
-- Public:    metric_totals(actor)  -- per organization, job type and queue: jobs submitted;
--                                     attempts completed, failed (failed, timed_out, lost) and
--                                     retried (attempt 2 and up); completed attempts' duration
--                                     sum and per-bucket counts (bounds in duration_bounds)
--            queue_depths(actor)   -- jobs waiting to run per organization and queue:
--                                     runnable (due now), scheduled (run_at or next_retry_at
--                                     ahead), waiting (on dependencies)
-- Internal:  _duration_bounds()          -- the histogram's upper bounds, in seconds
--            _duration_bucket(seconds)   -- 1-based bucket of a duration (le semantics)
--            _bucket_array(jsonb)        -- {"bucket": count} -> bigint[] with zeros filled
--            _add_buckets(a, b)          -- elementwise sum of two bucket arrays
-- Totals:    what the job and attempt tables hold now (running attempts are read from their
--            jobs: worker.sql) plus metric_rollup, in one statement;
--            cleanup_batch (maintenance.sql) moves deleted rows into metric_rollup in the
--            statement that deletes them, so a total never goes down. Jobs and attempts are
--            only ever deleted by that cleanup. Duration sums are numeric, exact: a float
--            sum regrouped by the move could come out an ulp lower, which Prometheus would
--            read as a counter reset.
-- Reads:     every job and attempt of the visible organizations: the cost follows retention.
-- Locks:     none.
-- Raises:    nothing of its own.
-- Events:    none.

CREATE OR REPLACE FUNCTION jobqueue._duration_bounds() RETURNS double precision[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Changing these changes what the rollup's stored arrays mean: a migration's job.
    SELECT '{0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,120,300,600,1800,3600}'
        ::double precision[]
$$;

-- The bucket k (1-based) with bounds[k-1] < seconds <= bounds[k]; past the last bound,
-- cardinality(bounds) + 1. width_bucket counts the thresholds <= its operand, so on the
-- negated, reversed bounds it counts the bounds >= seconds.
CREATE OR REPLACE FUNCTION jobqueue._duration_bucket(seconds double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT cardinality(b) + 1 - width_bucket(-seconds,
        ARRAY(SELECT -x FROM unnest(b) WITH ORDINALITY AS u (x, i) ORDER BY i DESC))
    FROM (SELECT jobqueue._duration_bounds() AS b) AS d
$$;

CREATE OR REPLACE FUNCTION jobqueue._bucket_array(counts jsonb) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(
        SELECT coalesce((counts ->> g::text)::bigint, 0)
        FROM generate_series(1, cardinality(jobqueue._duration_bounds()) + 1) AS g
        ORDER BY g)
$$;

CREATE OR REPLACE FUNCTION jobqueue._add_buckets(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(
        SELECT coalesce(a[g], 0) + coalesce(b[g], 0)
        FROM generate_series(1, cardinality(jobqueue._duration_bounds()) + 1) AS g
        ORDER BY g)
$$;

CREATE OR REPLACE FUNCTION jobqueue.metric_totals(actor text DEFAULT NULL)
RETURNS TABLE (
    organization text, job_type text, queue text, submitted bigint, completed bigint,
    failed bigint, retried bigint, duration_sum numeric, duration_buckets bigint[],
    duration_bounds double precision[]
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_orgs bigint[] := coalesce(jobqueue._visible_organizations(metric_totals.actor),
                                ARRAY(SELECT o.id FROM jobqueue.organization AS o));
BEGIN
    RETURN QUERY
    WITH jobs AS (
        SELECT j.organization_id, j.job_type, j.queue, count(*) AS submitted
        FROM jobqueue.job AS j
        WHERE j.organization_id = ANY (v_orgs)
        GROUP BY 1, 2, 3
    ), attempts AS (
        SELECT j.organization_id, j.job_type, j.queue, a.outcome, a.attempt,
               extract(epoch FROM a.finished_at - a.started_at) AS secs
        FROM jobqueue.attempt AS a
        JOIN jobqueue.job AS j ON j.id = a.job_id
        WHERE a.organization_id = ANY (v_orgs)
        UNION ALL
        -- the running attempts, on their jobs (worker.sql): a retry counts from its start
        SELECT j.organization_id, j.job_type, j.queue, NULL, j.attempt, NULL
        FROM jobqueue.job AS j
        WHERE j.organization_id = ANY (v_orgs) AND j.status = 'running'
    ), attempt_totals AS (
        SELECT t.organization_id, t.job_type, t.queue,
               count(*) FILTER (WHERE t.outcome = 'completed') AS completed,
               count(*) FILTER (WHERE t.outcome IN ('failed', 'timed_out', 'lost')) AS failed,
               count(*) FILTER (WHERE t.attempt > 1) AS retried,
               coalesce(sum(t.secs) FILTER (WHERE t.outcome = 'completed'), 0) AS duration_sum
        FROM attempts AS t
        GROUP BY 1, 2, 3
    ), buckets AS (
        SELECT b.organization_id, b.job_type, b.queue,
               jobqueue._bucket_array(jsonb_object_agg(b.bucket, b.n)) AS counts
        FROM (SELECT t.organization_id, t.job_type, t.queue,
                     jobqueue._duration_bucket(t.secs::double precision) AS bucket, count(*) AS n
              FROM attempts AS t WHERE t.outcome = 'completed'
              GROUP BY 1, 2, 3, 4) AS b
        GROUP BY 1, 2, 3
    ), rolled AS (
        SELECT r.* FROM jobqueue.metric_rollup AS r WHERE r.organization_id = ANY (v_orgs)
    ), keys AS (
        SELECT k.organization_id, k.job_type, k.queue FROM jobs AS k
        UNION SELECT k.organization_id, k.job_type, k.queue FROM attempt_totals AS k
        UNION SELECT k.organization_id, k.job_type, k.queue FROM rolled AS k
    )
    SELECT o.name, k.job_type, k.queue,
           coalesce(j.submitted, 0) + coalesce(r.submitted, 0),
           coalesce(t.completed, 0) + coalesce(r.completed, 0),
           coalesce(t.failed, 0) + coalesce(r.failed, 0),
           coalesce(t.retried, 0) + coalesce(r.retried, 0),
           coalesce(t.duration_sum, 0) + coalesce(r.duration_sum, 0),
           jobqueue._add_buckets(b.counts, r.duration_buckets),
           jobqueue._duration_bounds()
    FROM keys AS k
    JOIN jobqueue.organization AS o ON o.id = k.organization_id
    LEFT JOIN jobs AS j USING (organization_id, job_type, queue)
    LEFT JOIN attempt_totals AS t USING (organization_id, job_type, queue)
    LEFT JOIN buckets AS b USING (organization_id, job_type, queue)
    LEFT JOIN rolled AS r USING (organization_id, job_type, queue)
    ORDER BY 1, 2, 3;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.queue_depths(actor text DEFAULT NULL)
RETURNS TABLE (organization text, queue text, state text, jobs bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_visible bigint[] := jobqueue._visible_organizations(queue_depths.actor);
BEGIN
    -- One index range per organization and live status (job_org_status_id_idx), as
    -- job_counts reads. Only states with jobs have a row; /metrics shows the others at 0.
    RETURN QUERY
        SELECT o.name, j.queue,
               CASE WHEN j.status = 'waiting' THEN 'waiting'
                    WHEN coalesce(j.next_retry_at, j.run_at) > now() THEN 'scheduled'
                    ELSE 'runnable' END,
               count(*)
        FROM jobqueue.organization AS o
        CROSS JOIN LATERAL (
            SELECT l.queue, l.status, l.run_at, l.next_retry_at FROM jobqueue.job AS l
            WHERE l.organization_id = o.id
              AND l.status IN ('waiting', 'queued', 'retrying')
        ) AS j
        WHERE v_visible IS NULL OR o.id = ANY (v_visible)
        GROUP BY 1, 2, 3
        ORDER BY 1, 2, 3;
END
$$;

-- \df+ explains each public function with its header line.
COMMENT ON FUNCTION jobqueue.metric_totals(text) IS
    'metric_totals(actor): per organization, job type and queue, jobs submitted and attempts completed, failed and retried since the start, with the completed attempts'' duration histogram; monotonic through cleanup.';
COMMENT ON FUNCTION jobqueue.queue_depths(text) IS
    'queue_depths(actor): jobs waiting to run per organization and queue: runnable, scheduled, waiting on dependencies.';
