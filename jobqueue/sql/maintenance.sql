-- maintenance.sql: bounded batches that keep the engine healthy; run by periodic tasks.
--
-- Owns:      rescuing attempts whose worker vanished or overran its timeout; retention cleanup.
-- Public:    rescue_attempts(stale_after, timeout_grace, batch)  -- returns attempts closed;
--                                                                   held ones stay open
--            cleanup_batch(retention, batch)                     -- returns rows deleted
-- States:    running -> retrying | dead | canceled (rescue); deletes terminal jobs (cleanup).
-- Locks:     FOR UPDATE SKIP LOCKED on the rows of each batch, so any number of workers may
--            run these at once without a leader.
-- Raises:    JQV03 bad argument.
-- Events:    transitions via the lifecycle trigger; cleanup deletes events past retention.

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
        SELECT j.id, j.attempt, a.procrastinate_job_id, a.worker_id,
               CASE WHEN w.id IS NULL THEN 'lost' ELSE 'timed_out' END AS outcome
        FROM jobqueue.attempt AS a
        JOIN jobqueue.job AS j ON j.id = a.job_id AND j.attempt = a.attempt
        LEFT JOIN procrastinate_workers AS w
            ON w.id = a.worker_id AND w.last_heartbeat > now() - stale_after
        WHERE a.outcome IS NULL AND j.status = 'running'
          AND (w.id IS NULL OR a.started_at < now() - j.timeout - timeout_grace)
          AND a.started_at < now() - interval '1 second'
          AND (a.held_at IS NULL OR a.held_at < now() - stale_after)
        ORDER BY j.id
        LIMIT batch
        FOR UPDATE OF j SKIP LOCKED
    LOOP
        UPDATE jobqueue.attempt
        SET outcome = v_row.outcome::jobqueue.attempt_outcome, finished_at = now(),
            error = CASE v_row.outcome
                WHEN 'lost' THEN format('worker %s stopped heartbeating', v_row.worker_id)
                ELSE 'ran past its timeout; closed by the rescuer' END
        WHERE job_id = v_row.id AND attempt = v_row.attempt;
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
                                        v_row.attempt, v_row.worker_id)
                ELSE format('attempt %s timed out', v_row.attempt) END,
            updated_at = now()
        WHERE j.id = v_row.id;
        -- The lost attempt's vehicle is done with; a worker that comes back finds it gone.
        DELETE FROM procrastinate_jobs WHERE id = v_row.procrastinate_job_id;
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
SET search_path = jobqueue, procrastinate, pg_catalog
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
    ), gone_events AS (
        DELETE FROM jobqueue.event AS e USING doomed WHERE e.job_id = doomed.id
    ), gone_attempts AS (
        -- no foreign key cascades here (migration 0005)
        DELETE FROM jobqueue.attempt AS a USING doomed WHERE a.job_id = doomed.id
    )
    DELETE FROM jobqueue.job AS j USING doomed WHERE j.id = doomed.id;
    GET DIAGNOSTICS v_jobs = ROW_COUNT;

    -- The oldest events by id (ids follow time): bounded to one batch whatever the table
    -- holds, and no index on created_at to write with every event.
    DELETE FROM jobqueue.event
    WHERE id IN (SELECT id FROM jobqueue.event ORDER BY id LIMIT batch)
      AND created_at < now() - retention;
    GET DIAGNOSTICS v_events = ROW_COUNT;

    -- Vehicles whose worker finished them but did not delete them (the CLI worker's default).
    DELETE FROM procrastinate_jobs
    WHERE id IN (SELECT id FROM procrastinate_jobs
                 WHERE status IN ('succeeded', 'failed', 'cancelled', 'aborted')
                 ORDER BY id LIMIT batch FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS v_vehicles = ROW_COUNT;
    -- Vehicles still 'doing' whose worker is gone: its finish never reached the database (a
    -- connection dropped in between). Their attempts, if still open, are the rescuer's.
    DELETE FROM procrastinate_jobs
    WHERE id IN (SELECT p.id FROM procrastinate_jobs AS p
                 WHERE p.status = 'doing'
                   AND NOT EXISTS (SELECT FROM procrastinate_workers AS w
                                   WHERE w.id = p.worker_id)
                 ORDER BY p.id LIMIT batch FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS v_orphans = ROW_COUNT;

    DELETE FROM jobqueue.rate_counter AS r
    WHERE r.window_start < now() - interval '1 day';

    RETURN v_jobs + v_events + v_vehicles + v_orphans;
END
$$;
