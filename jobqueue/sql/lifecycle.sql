-- lifecycle.sql: the job state machine, enforced on the table itself.
--
-- Owns:      the triggers on jobqueue.job that every status change passes through, whoever
--            issues the UPDATE; the vehicles (procrastinate jobs) that carry runnable jobs to
--            workers; cancel and manual retry; the retry backoff.
-- Public:    cancel_job(job_id, actor)  -- queued/waiting/retrying -> canceled; running -> cancel request
--            retry_job(job_id, actor)   -- dead/canceled -> queued with fresh attempts
-- Internal:  _tg_job__after_insert / _tg_job__after_update  -- check transitions, write events,
--                                                              defer or drop vehicles, dependencies
--            _defer_vehicles(ids), _insert_vehicles(ids, queues, ...), _drop_vehicles(ids),
--            _backoff(base, max, n), _job_infos(ids)
-- States:    reads all; writes every transition of jobqueue.job_transition.
-- Locks:     cancel_job and retry_job take the job's row lock (FOR UPDATE); vehicles are
--            dropped with SKIP LOCKED, so a worker fetching one concurrently never deadlocks.
-- Raises:    JQT01 illegal transition, JQN01 job not visible, JQC01 retry of a job whose
--            identical twin (same dedup hash) is active, JQV04 retry of a job with a
--            dependency that has not completed.
-- Events:    one event row per status change ('submitted' on insert, else the transition's
--            event); the event table's trigger sends the NOTIFY (events.sql). Vehicles send
--            procrastinate's job_inserted once per queue and statement (migration 0006).

CREATE OR REPLACE FUNCTION jobqueue._backoff(
    p_base interval, p_max interval, p_attempt integer
) RETURNS interval
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Exponential with "equal jitter": the delay for attempt n is d = min(max, base * 2^(n-1)),
    -- drawn uniformly from [d/2, d], so retries of many jobs that failed together spread out.
    SELECT d * (0.5 + random() * 0.5)
    FROM (SELECT least(p_max, p_base * power(2, least(greatest(p_attempt, 1) - 1, 30))) AS d) AS s
$$;

-- The vehicles of runnable jobs, given column by column in job id order: one procrastinate
-- job per runnable job. The queueing lock names the job, so a second waiting vehicle for the
-- same job is impossible and cancel finds the waiting one by index. The rows are the ones
-- procrastinate_defer_jobs_v1 writes (procrastinate is pinned), inserted here so that the
-- statement also learns each vehicle's queue.
-- procrastinate's own trigger sends a NOTIFY per job inserted. For vehicles it is off
-- (migration 0006), and this sends one per queue instead, on the same two channels with the
-- same payload. procrastinate's worker reads only the payload's type, and all the
-- notifications of a transaction arrive together at commit: one wakes a worker just as a
-- thousand would.
CREATE OR REPLACE FUNCTION jobqueue._insert_vehicles(
    p_job_ids bigint[], p_queues text[], p_priorities integer[], p_scheduled_at timestamptz[]
) RETURNS void
LANGUAGE plpgsql
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_sent integer;
BEGIN
    WITH inserted AS (
        INSERT INTO procrastinate.procrastinate_jobs (
            queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at
        )
        SELECT v.queue, 'jobqueue.run', v.priority, NULL, 'jobqueue:' || v.job_id,
               jsonb_build_object('job_id', v.job_id), v.scheduled_at
        FROM unnest(p_job_ids, p_queues, p_priorities, p_scheduled_at)
            AS v (job_id, queue, priority, scheduled_at)
        ORDER BY v.job_id
        RETURNING id, queue_name
    )
    SELECT count(*) INTO v_sent
    FROM (
        SELECT pg_notify('procrastinate_queue_v1#' || q.queue_name, q.payload),
               pg_notify('procrastinate_any_queue_v1', q.payload)
        FROM (SELECT i.queue_name,
                     json_build_object('type', 'job_inserted', 'job_id', min(i.id))::text
                         AS payload
              FROM inserted AS i
              GROUP BY i.queue_name) AS q
    ) AS sent;
END
$$;

-- Replaced by _insert_vehicles, which writes the vehicles it announces.
DROP FUNCTION IF EXISTS jobqueue._notify_vehicles(text[], bigint[]);

CREATE OR REPLACE FUNCTION jobqueue._defer_vehicles(p_job_ids bigint[]) RETURNS void
LANGUAGE plpgsql
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
-- The plan is the same for one id or a thousand (the primary key); planning it afresh on
-- every call cost more than running it.
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    PERFORM jobqueue._insert_vehicles(
        array_agg(j.id ORDER BY j.id), array_agg(j.queue ORDER BY j.id),
        array_agg(j.priority ORDER BY j.id),
        array_agg(CASE j.status
                      WHEN 'retrying' THEN j.next_retry_at
                      ELSE nullif(greatest(j.run_at, now()), now())
                  END ORDER BY j.id))
    FROM jobqueue.job AS j
    WHERE j.id = ANY (p_job_ids);
END
$$;

CREATE OR REPLACE FUNCTION jobqueue._drop_vehicles(p_job_ids bigint[]) RETURNS void
LANGUAGE sql
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
    -- A vehicle being claimed right now is skipped: the claim will find the job no
    -- longer runnable and the worker drops it (worker.sql).
    -- Each vehicle is looked up on its own by its lock: as a join, a plan made on stale
    -- statistics may walk every waiting vehicle.
    DELETE FROM procrastinate.procrastinate_jobs
    WHERE id IN (
        SELECT v.id FROM unnest(p_job_ids) AS j (id)
        CROSS JOIN LATERAL (
            SELECT v.id FROM procrastinate.procrastinate_jobs AS v
            WHERE v.queueing_lock = 'jobqueue:' || j.id AND v.status = 'todo'
            LIMIT 1
            FOR UPDATE SKIP LOCKED
        ) AS v
    )
$$;

CREATE OR REPLACE FUNCTION jobqueue._tg_job__after_insert() RETURNS trigger
LANGUAGE plpgsql
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    -- In id order: the rows come sorted, and the aggregates keep the order they are given.
    PERFORM jobqueue._log_events(
        array_agg(n.organization_id), array_agg(n.id),
        array_fill('submitted'::text, ARRAY[count(*)::integer]),
        array_agg(jsonb_build_object('status', n.status, 'job_type', n.job_type,
                                     'priority', n.priority)))
    FROM (SELECT * FROM new_rows ORDER BY id) AS n
    HAVING count(*) > 0;

    -- The vehicles of the queued ones, from the rows at hand rather than read back from the
    -- table.
    PERFORM jobqueue._insert_vehicles(
        array_agg(n.id ORDER BY n.id), array_agg(n.queue ORDER BY n.id),
        array_agg(n.priority ORDER BY n.id),
        array_agg(nullif(greatest(n.run_at, now()), now()) ORDER BY n.id))
    FROM new_rows AS n
    WHERE n.status = 'queued'
    HAVING count(*) > 0;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue._tg_job__after_update() RETURNS trigger
LANGUAGE plpgsql
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_changes record;
    v_illegal record;
    v_unmet record;
BEGIN
    -- Every consequence of the statement's status changes, sorted in one pass: a batch of
    -- starts or finishes runs this trigger once, so its fixed cost is what each batch pays.
    SELECT bool_or(t.event IS NULL) AS illegal,
           array_agg(n.id) FILTER (WHERE o.status IN ('dead', 'canceled')
                                     AND n.status = 'queued') AS retried,
           array_agg(n.id) FILTER (WHERE n.status IN ('queued', 'retrying')) AS runnable,
           array_agg(n.id) FILTER (WHERE o.status IN ('queued', 'retrying')
                                     AND n.status = 'canceled') AS dropped,
           array_agg(n.id) FILTER (WHERE n.status = 'completed') AS completed,
           array_agg(n.id) FILTER (WHERE n.status IN ('dead', 'canceled')) AS ended,
           array_agg(n.id) FILTER (WHERE n.status = 'running') AS started,
           array_agg(n.id) FILTER (WHERE o.status = 'running') AS stopped
    INTO v_changes
    FROM old_rows AS o
    JOIN new_rows AS n USING (id)
    LEFT JOIN jobqueue.job_transition AS t
        ON t.from_status = o.status AND t.to_status = n.status
    WHERE o.status <> n.status;

    IF v_changes.illegal IS NULL THEN
        RETURN NULL;  -- no status changed: progress, checkpoints, cancel requests
    END IF;

    IF v_changes.illegal THEN
        SELECT o.id, o.status AS from_status, n.status AS to_status INTO v_illegal
        FROM old_rows AS o
        JOIN new_rows AS n USING (id)
        LEFT JOIN jobqueue.job_transition AS t
            ON t.from_status = o.status AND t.to_status = n.status
        WHERE o.status <> n.status AND t.event IS NULL
        LIMIT 1;
        RAISE EXCEPTION 'job % cannot go from % to %',
            v_illegal.id, v_illegal.from_status, v_illegal.to_status
            USING ERRCODE = 'JQT01',
                  DETAIL = format('{"job_id": %s, "from": "%s", "to": "%s"}',
                                  v_illegal.id, v_illegal.from_status, v_illegal.to_status);
    END IF;

    -- A manual retry never runs a job ahead of its dependencies (there is no way back to
    -- waiting): each must have completed. Retry a failed dependency first; its dependents,
    -- canceled by its failure, are retried once it has completed.
    IF v_changes.retried IS NOT NULL THEN
        SELECT d.job_id AS id, d.depends_on_id, dep.status INTO v_unmet
        FROM jobqueue.job_dependency AS d
        JOIN jobqueue.job AS dep ON dep.id = d.depends_on_id
        WHERE d.job_id = ANY (v_changes.retried) AND dep.status <> 'completed'
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'job % cannot be retried: its dependency % is %',
                v_unmet.id, v_unmet.depends_on_id, v_unmet.status
                USING ERRCODE = 'JQV04',
                      DETAIL = format('{"job_id": %s, "depends_on": %s, "status": "%s"}',
                                      v_unmet.id, v_unmet.depends_on_id, v_unmet.status);
        END IF;
    END IF;

    PERFORM jobqueue._log_events(
        array_agg(c.organization_id), array_agg(c.id), array_agg(c.event), array_agg(c.data))
    FROM (SELECT n.organization_id, n.id, t.event,
                 jsonb_strip_nulls(jsonb_build_object(
                     'status', n.status, 'from', o.status, 'attempt', n.attempt,
                     'next_retry_at', n.next_retry_at, 'error', left(n.last_error, 500))) AS data
          FROM old_rows AS o
          JOIN new_rows AS n USING (id)
          JOIN jobqueue.job_transition AS t
              ON t.from_status = o.status AND t.to_status = n.status
          WHERE o.status <> n.status
          ORDER BY n.id) AS c
    HAVING count(*) > 0;

    IF v_changes.runnable IS NOT NULL THEN
        PERFORM jobqueue._defer_vehicles(v_changes.runnable);
    END IF;
    IF v_changes.dropped IS NOT NULL THEN
        PERFORM jobqueue._drop_vehicles(v_changes.dropped);
    END IF;
    IF v_changes.completed IS NOT NULL THEN
        PERFORM jobqueue._release_dependents(v_changes.completed);
    END IF;
    IF v_changes.ended IS NOT NULL THEN
        PERFORM jobqueue._cancel_dependents(v_changes.ended);
    END IF;
    IF v_changes.started IS NOT NULL OR v_changes.stopped IS NOT NULL THEN
        -- Running counts of capped scopes, start counts of start limits (claim.sql).
        PERFORM jobqueue._track_running(v_changes.started, v_changes.stopped);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS tg_job__after_insert ON jobqueue.job;
CREATE TRIGGER tg_job__after_insert
    AFTER INSERT ON jobqueue.job
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobqueue._tg_job__after_insert();

DROP TRIGGER IF EXISTS tg_job__after_update ON jobqueue.job;
CREATE TRIGGER tg_job__after_update
    AFTER UPDATE ON jobqueue.job
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobqueue._tg_job__after_update();

CREATE OR REPLACE FUNCTION jobqueue._job_infos(p_job_ids bigint[])
RETURNS SETOF jobqueue.job_info
LANGUAGE plpgsql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
-- Primary-key lookups whatever the number of ids: a plan kept for the session, where a SQL
-- function would plan again on every call (most calls ask for one job).
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
        SELECT j.id, j.job_type, o.name, j.queue, j.status, j.priority, j.params, j.attempt,
               j.max_retries, j.timeout, j.run_at, j.next_retry_at, j.progress,
               j.progress_message, j.result, j.last_error, j.cancel_requested, j.created_by,
               j.created_at, j.started_at, j.finished_at, j.updated_at,
               coalesce((SELECT array_agg(d.depends_on_id ORDER BY d.depends_on_id)
                         FROM jobqueue.job_dependency AS d WHERE d.job_id = j.id), '{}'),
               false
        FROM unnest(p_job_ids) WITH ORDINALITY AS i (id, ord)
        JOIN jobqueue.job AS j ON j.id = i.id
        JOIN jobqueue.organization AS o ON o.id = j.organization_id
        ORDER BY i.ord;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue._lock_visible_job(p_job_id bigint, p_actor text)
RETURNS jobqueue.job
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_job jobqueue.job;
BEGIN
    SELECT * INTO v_job FROM jobqueue.job WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND OR NOT jobqueue._can_access_id(p_actor, v_job.organization_id) THEN
        RAISE EXCEPTION 'job % not found', p_job_id USING ERRCODE = 'JQN01';
    END IF;
    RETURN v_job;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.cancel_job(job_id bigint, actor text DEFAULT NULL)
RETURNS jobqueue.job_info
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_job jobqueue.job;
    v_reason text := 'canceled by ' || coalesce(actor, 'a service');
BEGIN
    v_job := jobqueue._lock_visible_job(cancel_job.job_id, actor);
    CASE
        WHEN v_job.status IN ('waiting', 'queued', 'retrying') THEN
            UPDATE jobqueue.job
            SET status = 'canceled', finished_at = now(), next_retry_at = NULL,
                last_error = v_reason, updated_at = now()
            WHERE id = v_job.id;
        WHEN v_job.status = 'running' AND NOT v_job.cancel_requested THEN
            -- The worker acknowledges by ending the attempt 'canceled'; the abort flag on the
            -- vehicle makes procrastinate notify it at once.
            UPDATE jobqueue.job SET cancel_requested = true, updated_at = now()
            WHERE id = v_job.id;
            UPDATE procrastinate.procrastinate_jobs SET abort_requested = true
            WHERE id = v_job.attempt_vehicle_id  -- the running attempt's (worker.sql)
              AND status = 'doing';
            PERFORM jobqueue._log_events(
                ARRAY[v_job.organization_id], ARRAY[v_job.id], ARRAY['cancel_requested'],
                ARRAY[jsonb_build_object('status', 'running', 'attempt', v_job.attempt,
                                         'by', actor)]);
        WHEN v_job.status = 'running' THEN
            NULL;  -- already requested: asking twice is not an error
        ELSE
            RAISE EXCEPTION 'job % is % and cannot be canceled', v_job.id, v_job.status
                USING ERRCODE = 'JQT01',
                      DETAIL = format('{"job_id": %s, "from": "%s", "to": "canceled"}',
                                      v_job.id, v_job.status);
    END CASE;
    RETURN jobqueue._job_infos(ARRAY[v_job.id]);
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.retry_job(job_id bigint, actor text DEFAULT NULL)
RETURNS jobqueue.job_info
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_job jobqueue.job;
BEGIN
    v_job := jobqueue._lock_visible_job(retry_job.job_id, actor);
    IF v_job.status NOT IN ('dead', 'canceled') THEN
        RAISE EXCEPTION 'job % is % and cannot be retried', v_job.id, v_job.status
            USING ERRCODE = 'JQT01',
                  DETAIL = format('{"job_id": %s, "from": "%s", "to": "queued"}',
                                  v_job.id, v_job.status);
    END IF;
    -- Fresh attempts: the retry budget counts from here; attempt numbers keep growing so the
    -- attempt log stays whole.
    BEGIN
        UPDATE jobqueue.job
        SET status = 'queued', retry_base = attempt, finished_at = NULL,
            cancel_requested = false, run_at = now(), progress = NULL, progress_message = NULL,
            result = NULL, updated_at = now()
        WHERE id = v_job.id;
    EXCEPTION WHEN unique_violation THEN
        -- Dedup: a job with the same type, organization and params was submitted since and
        -- is still active; a second active copy would break the one-active-per-hash rule.
        RAISE EXCEPTION 'job % cannot be retried: an identical job is active', v_job.id
            USING ERRCODE = 'JQC01',
                  DETAIL = format('{"job_id": %s, "active_job_id": %s}', v_job.id,
                                  coalesce((SELECT a.id FROM jobqueue.job AS a
                                            WHERE a.job_hash = v_job.job_hash
                                              AND a.status IN ('waiting', 'queued',
                                                               'running', 'retrying')
                                            LIMIT 1)::text, 'null'));
    END;
    RETURN jobqueue._job_infos(ARRAY[v_job.id]);
END
$$;

-- \df+ explains each public function with its header line.
COMMENT ON FUNCTION jobqueue.cancel_job(bigint, text) IS
    'cancel_job(job_id, actor): waiting/queued/retrying -> canceled at once; a running job gets a cancel request its handler sees; JQT01 for an ended job.';
COMMENT ON FUNCTION jobqueue.retry_job(bigint, text) IS
    'retry_job(job_id, actor): dead/canceled -> queued with fresh attempts; JQT01 from any other status; JQC01 while an identical job is active; JQV04 while a dependency has not completed.';
