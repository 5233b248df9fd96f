-- metrics.sql: what an organization's jobs are doing, as one JSON document.
--
-- Public:    metrics(actor, organization, since)  -- counts by status, queue depth by priority,
--            processing time (avg, p50, p95, p99), failure rate by type, throughput over time.
--            organization NULL: every organization the actor may see.
-- Reads:     live jobs through job_org_status_id_idx; jobs and attempts finished since `since`
--            through job_org_finished_idx and attempt_org_finished_idx, so the cost follows the
--            window, not the history.
-- Locks:     none.
-- Raises:    JQA02 organization not accessible, JQV03 bad argument.
-- Events:    none.

CREATE OR REPLACE FUNCTION jobqueue.metrics(
    actor text DEFAULT NULL,
    organization text DEFAULT NULL,
    since timestamptz DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_since timestamptz := coalesce(since, now() - interval '24 hours');
    v_orgs bigint[];
    v_bucket text;
    v_result jsonb;
BEGIN
    IF v_since > now() OR v_since < now() - interval '90 days' THEN
        RAISE EXCEPTION 'since must be within the last 90 days' USING ERRCODE = 'JQV03';
    END IF;
    IF metrics.organization IS NOT NULL THEN
        v_orgs := ARRAY[jobqueue._require_organization(actor, metrics.organization)];
    ELSE
        v_orgs := coalesce(jobqueue._visible_organizations(actor),
                           ARRAY(SELECT id FROM jobqueue.organization));
    END IF;
    v_bucket := CASE WHEN now() - v_since <= interval '3 hours' THEN 'minute' ELSE 'hour' END;

    WITH live AS (
        SELECT j.status, j.priority, count(*) AS n
        FROM jobqueue.job AS j
        WHERE j.organization_id = ANY (v_orgs)
          AND j.status IN ('waiting', 'queued', 'running', 'retrying')
        GROUP BY j.status, j.priority
    ), finished AS (
        SELECT j.status, count(*) AS n
        FROM jobqueue.job AS j
        WHERE j.organization_id = ANY (v_orgs) AND j.finished_at >= v_since
        GROUP BY j.status
    ), attempts AS (
        SELECT a.job_type, a.outcome, a.finished_at,
               extract(epoch FROM a.finished_at - a.started_at) * 1000 AS ms
        FROM jobqueue.attempt AS a
        WHERE a.organization_id = ANY (v_orgs) AND a.finished_at >= v_since
    )
    SELECT jsonb_build_object(
        'organization', metrics.organization,
        'since', v_since,
        'generated_at', now(),
        'counts_by_status', (
            SELECT jsonb_object_agg(s.status, coalesce(c.n, 0))
            FROM unnest(enum_range(NULL::jobqueue.job_status)) AS s (status)
            LEFT JOIN (SELECT status, sum(n) AS n FROM live GROUP BY status
                       UNION ALL SELECT status, n FROM finished) AS c USING (status)),
        'queue_depth_by_priority', coalesce((
            SELECT jsonb_agg(jsonb_build_object('priority', priority, 'depth', depth)
                             ORDER BY priority DESC)
            FROM (SELECT priority, sum(n) AS depth FROM live
                  WHERE status IN ('queued', 'retrying') GROUP BY priority) AS q), '[]'),
        'processing_time_ms', (
            SELECT jsonb_build_object(
                'count', count(*),
                'avg', round(avg(ms)::numeric, 2),
                'p50', round(percentile_cont(0.50) WITHIN GROUP (ORDER BY ms)::numeric, 2),
                'p95', round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 2),
                'p99', round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2))
            FROM attempts WHERE outcome = 'completed'),
        'failure_rate_by_type', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                'job_type', job_type, 'attempts', total, 'failed', failed,
                'rate', round(failed::numeric / total, 4)) ORDER BY job_type)
            FROM (SELECT job_type, count(*) AS total,
                         count(*) FILTER (WHERE outcome <> 'completed') AS failed
                  FROM attempts GROUP BY job_type) AS f), '[]'),
        'throughput', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                'at', bucket, 'completed', completed, 'failed', failed) ORDER BY bucket)
            FROM (SELECT date_trunc(v_bucket, finished_at) AS bucket,
                         count(*) FILTER (WHERE outcome = 'completed') AS completed,
                         count(*) FILTER (WHERE outcome <> 'completed') AS failed
                  FROM attempts GROUP BY 1) AS t), '[]')
    ) INTO v_result;
    RETURN v_result;
END
$$;

-- \df+ explains each public function with its header line.
COMMENT ON FUNCTION jobqueue.metrics(text, text, timestamp with time zone) IS
    'metrics(actor, organization, since): counts by status, queue depth by priority, processing time (avg, p50, p95, p99), failure rate by type, throughput, as one JSON document.';
