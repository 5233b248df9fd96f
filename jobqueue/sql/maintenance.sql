-- maintenance.sql: bounded batches that keep the engine healthy; run by periodic tasks.
--
-- Owns:      rescuing attempts whose worker vanished or overran its timeout (a running
--            attempt is read from its job row, and its attempt row written as it is closed:
--            worker.sql); retention cleanup.
-- Public:    rescue_attempts(stale_after, timeout_grace, batch)  -- returns attempts closed;
--                                                                   held ones stay open
--            cleanup_batch(retention, batch)                     -- returns rows deleted
-- States:    running -> retrying | dead | canceled (rescue); deletes terminal jobs and ended
--            browser sessions (cleanup).
-- Locks:     FOR UPDATE SKIP LOCKED on the rows of each batch, so any number of workers may
--            run these at once without a leader.
-- Raises:    JQV03 bad argument.
-- Events:    transitions via the lifecycle trigger; cleanup deletes events past retention.
-- Totals:    cleanup adds the jobs and attempts it deletes to jobqueue.metric_rollup in the
--            same statement, so the totals of /metrics never go down (totals.sql).

-- Closes running attempts that can no longer finish: the worker stopped heartbeating
-- ('lost'), or the attempt ran past its job's timeout plus a grace ('timed_out'; the worker
-- normally records that itself once the handler is gone). Their jobs retry, die or cancel as
-- a failure would, and their vehicles are removed. An attempt whose worker reported its
-- handler still running within stale_after (hold_attempts) is left open, worker or not: a
-- new attempt would run beside it.
CREATE OR REPLACE FUNCTION jobqueue.rescue_attempts(
    stale_after interval DEFAULT '10 seconds',
    timeout_grace interval DEFAULT '30 seconds',
    batch integer DEFAULT 500
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_row record;
    v_count integer := 0;
BEGIN
    IF stale_after IS NULL OR stale_after < interval '1 second'
       OR batch IS NULL OR batch NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'stale_after must be at least 1 second and batch 1-100000'
            USING ERRCODE = 'JQV03';
    END IF;
    FOR v_row IN
        -- A running attempt's facts are on its job (worker.sql). Running jobs of every
        -- organization: one range of job_org_status_id_idx each, whatever the history holds.
        SELECT j.id, j.attempt, j.organization_id, j.job_type, j.attempt_worker_id,
               j.attempt_vehicle_id, j.attempt_started_at, j.attempt_held_at,
               CASE WHEN w.id IS NULL THEN 'lost' ELSE 'timed_out' END AS outcome
        FROM jobqueue.job AS j
        LEFT JOIN procrastinate.procrastinate_workers AS w
            ON w.id = j.attempt_worker_id AND w.last_heartbeat > now() - stale_after
        WHERE j.organization_id = ANY (ARRAY(SELECT o.id FROM jobqueue.organization AS o))
          AND j.status = 'running'
          AND (w.id IS NULL OR j.attempt_started_at < now() - j.timeout - timeout_grace)
          AND j.attempt_started_at < now() - interval '1 second'
          AND (j.attempt_held_at IS NULL OR j.attempt_held_at < now() - stale_after)
        ORDER BY j.id
        LIMIT batch
        FOR UPDATE OF j SKIP LOCKED
    LOOP
        -- The attempt's one row, closed.
        INSERT INTO jobqueue.attempt (job_id, attempt, organization_id, job_type, worker_id,
                                      procrastinate_job_id, started_at, held_at, finished_at,
                                      outcome, error)
        VALUES (v_row.id, v_row.attempt, v_row.organization_id, v_row.job_type,
                v_row.attempt_worker_id, v_row.attempt_vehicle_id, v_row.attempt_started_at,
                v_row.attempt_held_at, now(), v_row.outcome::jobqueue.attempt_outcome,
                CASE v_row.outcome
                    WHEN 'lost' THEN format('worker %s stopped heartbeating',
                                            v_row.attempt_worker_id)
                    ELSE 'ran past its timeout; closed by the rescuer' END);
        UPDATE jobqueue.job AS j
        SET status = CASE
                WHEN j.cancel_requested THEN 'canceled'
                WHEN j.attempt - j.retry_base <= j.max_retries THEN 'retrying'
                ELSE 'dead' END::jobqueue.job_status,
            next_retry_at = CASE
                WHEN NOT j.cancel_requested AND j.attempt - j.retry_base <= j.max_retries
                THEN now() END,
            finished_at = CASE
                WHEN j.cancel_requested OR j.attempt - j.retry_base > j.max_retries
                THEN now() END,
            last_error = CASE v_row.outcome
                WHEN 'lost' THEN format('attempt %s lost: worker %s stopped heartbeating',
                                        v_row.attempt, v_row.attempt_worker_id)
                ELSE format('attempt %s timed out', v_row.attempt) END,
            attempt_started_at = NULL, attempt_worker_id = NULL, attempt_vehicle_id = NULL,
            attempt_held_at = NULL,
            updated_at = now()
        WHERE j.id = v_row.id;
        -- The lost attempt's vehicle is done with; a worker that comes back finds it gone.
        DELETE FROM procrastinate.procrastinate_jobs WHERE id = v_row.attempt_vehicle_id;
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;

-- Deletes one batch of terminal jobs older than the retention (their attempts, dependencies
-- and events go with them), plus old events and finished vehicles. Returns rows deleted;
-- callers repeat, committing between batches, until it returns less than the batch.
CREATE OR REPLACE FUNCTION jobqueue.cleanup_batch(
    retention interval DEFAULT '7 days', batch integer DEFAULT 1000
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_jobs integer;
    v_events integer;
    v_orphans integer;
    v_vehicles integer;
BEGIN
    IF retention IS NULL OR retention < interval '0' OR batch IS NULL
       OR batch NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'retention must be non-negative and batch 1-100000'
            USING ERRCODE = 'JQV03';
    END IF;
    -- The oldest finished jobs of each organization, by job_org_finished_idx: each scan stops
    -- at the retention horizon, so a tick costs one short index range per organization
    -- however much history is kept (and no index on finished_at alone is written per job).
    WITH doomed AS (
        SELECT j.id FROM jobqueue.job AS j
        WHERE j.id IN (
            SELECT oldest.id
            FROM jobqueue.organization AS o
            CROSS JOIN LATERAL (
                SELECT f.id, f.finished_at FROM jobqueue.job AS f
                WHERE f.organization_id = o.id AND f.finished_at < now() - retention
                ORDER BY f.finished_at
                LIMIT batch
            ) AS oldest
            ORDER BY oldest.finished_at
            LIMIT batch)
          -- a job others still wait on stays until they are done with it
          AND NOT EXISTS (SELECT FROM jobqueue.job_dependency AS d
                          JOIN jobqueue.job AS w ON w.id = d.job_id
                          WHERE d.depends_on_id = j.id AND w.finished_at IS NULL)
        FOR UPDATE SKIP LOCKED
    ), gone_attempts AS (
        -- no foreign key cascades here (migration 0005)
        DELETE FROM jobqueue.attempt AS a USING doomed WHERE a.job_id = doomed.id
        RETURNING a.job_id, a.attempt, a.outcome,
                  extract(epoch FROM a.finished_at - a.started_at) AS secs
    ), gone_jobs AS (
        DELETE FROM jobqueue.job AS j USING doomed WHERE j.id = doomed.id
        RETURNING j.id, j.organization_id, j.job_type, j.queue
    ), gone_job_totals AS (
        SELECT g.organization_id, g.job_type, g.queue, count(*) AS submitted
        FROM gone_jobs AS g GROUP BY 1, 2, 3
    ), gone_attempt_rows AS (
        SELECT g.organization_id, g.job_type, g.queue, a.outcome, a.attempt, a.secs
        FROM gone_attempts AS a JOIN gone_jobs AS g ON g.id = a.job_id
    ), gone_attempt_totals AS (
        SELECT t.organization_id, t.job_type, t.queue,
               count(*) FILTER (WHERE t.outcome = 'completed') AS completed,
               count(*) FILTER (WHERE t.outcome IN ('failed', 'timed_out', 'lost')) AS failed,
               count(*) FILTER (WHERE t.attempt > 1) AS retried,
               coalesce(sum(t.secs) FILTER (WHERE t.outcome = 'completed'), 0) AS duration_sum
        FROM gone_attempt_rows AS t GROUP BY 1, 2, 3
    ), gone_buckets AS (
        SELECT b.organization_id, b.job_type, b.queue,
               jobqueue._bucket_array(jsonb_object_agg(b.bucket, b.n)) AS counts
        FROM (SELECT t.organization_id, t.job_type, t.queue,
                     jobqueue._duration_bucket(t.secs::double precision) AS bucket, count(*) AS n
              FROM gone_attempt_rows AS t WHERE t.outcome = 'completed'
              GROUP BY 1, 2, 3, 4) AS b
        GROUP BY 1, 2, 3
    ), rolled_up AS (
        -- What /metrics counts stays counted once its rows are gone (totals.sql).
        INSERT INTO jobqueue.metric_rollup AS r (
            organization_id, job_type, queue, submitted, completed, failed, retried,
            duration_sum, duration_buckets)
        SELECT j.organization_id, j.job_type, j.queue, j.submitted,
               coalesce(t.completed, 0), coalesce(t.failed, 0), coalesce(t.retried, 0),
               coalesce(t.duration_sum, 0), jobqueue._add_buckets(b.counts, NULL)
        FROM gone_job_totals AS j
        LEFT JOIN gone_attempt_totals AS t USING (organization_id, job_type, queue)
        LEFT JOIN gone_buckets AS b USING (organization_id, job_type, queue)
        ORDER BY 1, 2, 3  -- concurrent cleanups lock rollup rows in one order
        ON CONFLICT ON CONSTRAINT metric_rollup_pkey DO UPDATE SET
            submitted = r.submitted + excluded.submitted,
            completed = r.completed + excluded.completed,
            failed = r.failed + excluded.failed,
            retried = r.retried + excluded.retried,
            duration_sum = r.duration_sum + excluded.duration_sum,
            duration_buckets = jobqueue._add_buckets(r.duration_buckets, excluded.duration_buckets)
    )
    SELECT count(*) INTO v_jobs FROM gone_jobs;

    -- The oldest events by id (ids follow time): bounded to one batch of rows whatever the
    -- table holds, and no index on created_at to write with every event. A deleted job's
    -- events go this way too: they are older than its end, so past the retention as well.
    WITH gone AS (
        DELETE FROM jobqueue.event_batch
        WHERE first_id IN (SELECT first_id FROM jobqueue.event_batch ORDER BY first_id LIMIT batch)
          AND created_at < now() - retention
        RETURNING cardinality(types) AS events
    )
    SELECT coalesce(sum(events), 0) INTO v_events FROM gone;

    -- Vehicles whose worker finished them but did not delete them (the CLI worker's default).
    DELETE FROM procrastinate.procrastinate_jobs
    WHERE id IN (SELECT id FROM procrastinate.procrastinate_jobs
                 WHERE status IN ('succeeded', 'failed', 'cancelled', 'aborted')
                 ORDER BY id LIMIT batch FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS v_vehicles = ROW_COUNT;
    -- Vehicles still 'doing' whose worker is gone: its finish never reached the database (a
    -- connection dropped in between). Their attempts, if still open, are the rescuer's.
    DELETE FROM procrastinate.procrastinate_jobs
    WHERE id IN (SELECT p.id FROM procrastinate.procrastinate_jobs AS p
                 WHERE p.status = 'doing'
                   AND NOT EXISTS (SELECT FROM procrastinate.procrastinate_workers AS w
                                   WHERE w.id = p.worker_id)
                 ORDER BY p.id LIMIT batch FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS v_orphans = ROW_COUNT;

    DELETE FROM jobqueue.rate_counter AS r
    WHERE r.window_start < now() - interval '1 day';
    -- Start limits' windows (claim.sql) are at most a day long, like rate limits'.
    DELETE FROM jobqueue.start_counter AS c
    WHERE c.window_start < now() - interval '1 day';

    -- Browser sessions that ended (signed out or expired) before the retention horizon.
    DELETE FROM jobqueue.api_token AS t
    WHERE t.session_of IS NOT NULL
      AND least(t.revoked_at, t.expires_at) < now() - retention;

    RETURN v_jobs + v_events + v_vehicles + v_orphans;
END
$$;
