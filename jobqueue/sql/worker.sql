-- worker.sql: what workers call while a job runs, and the fencing that keeps them honest.
--
-- Owns:      starting attempts in the claim itself (fetch_vehicles, set-based; or a trigger
--            on procrastinate's own fetch), so a start costs no round trip of its own;
--            finishing them in batches, progress and checkpoints.
-- Public:    fetch_vehicles(queues, worker_id, max_count)  -- procrastinate's fetch for a batch,
--                                                         attempts started set-based; shared
--                                                         fairly among organizations, within
--                                                         pauses and caps (claim.sql)
--            finish_attempts(outcomes jsonb)  -- many outcomes in one call; per item accepted
--                                                 or fenced off (the late outcome is kept on
--                                                 its attempt row only); outcomes are
--                                                 completed|failed|timed_out|canceled|lost
--            finish_and_fetch(outcomes, queues, worker_id, max_count)  -- both, one transaction
--            complete_attempt(job_id, attempt, result)             -- one; JQS01 when fenced
--            fail_attempt(job_id, attempt, error, traceback, retryable, outcome)
--            report_progress(job_id, attempt, percent, message)    -- returns cancel_requested
--            save_checkpoint(job_id, attempt, checkpoint)
--            job_checkpoint(job_id)
--            hold_attempts(job_ids, attempts)  -- their handlers still run past their end: the
--                                                rescuer leaves them open while reports come
-- Internal:  _claimable_vehicles, _outcome_items  -- the batch helpers
--            _tg_vehicle__before_fetch  -- on procrastinate's own fetch (todo -> doing of a
--                                          'jobqueue.run' vehicle not started by
--                                          fetch_vehicles): queued|retrying -> running, the
--                                          attempt started on the job row; the attempt number,
--                                          handler path, params, organization, timeout and
--                                          checkpoint into the vehicle's args
-- Attempts:  a running attempt lives on its job row (attempt, attempt_started_at,
--            attempt_worker_id, attempt_vehicle_id, attempt_held_at: set by the start, which
--            updates the job anyway); its jobqueue.attempt row is inserted once, by whatever
--            ends it (here, or rescue_attempts in maintenance.sql), in the statement that
--            moves the job on and clears those columns.
-- Fencing:   every call names (job_id, attempt) and acts only while that attempt is the job's
--            current running one.
-- States:    queued|retrying -> running; running -> completed|retrying|dead|canceled.
-- Locks:     jobs' row locks, a batch's in id order; vehicles are locked by the claim
--            (SKIP LOCKED), then their jobs.
-- Raises:    JQS01 stale attempt, JQV03 bad argument.
-- Events:    transitions via the lifecycle trigger; 'progress' from report_progress.

CREATE OR REPLACE FUNCTION jobqueue._tg_vehicle__before_fetch() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_job_id bigint := (NEW.args ->> 'job_id')::bigint;
    v_job jobqueue.job;
    v_started_at timestamptz;
BEGIN
    -- Never raise here: an error would fail procrastinate's fetch and stop the worker. A job
    -- that is no longer runnable (canceled meanwhile) gets attempt null, and the bridge drops it.
    -- A paused or capped job is not started: its vehicle stays waiting (claim.sql).
    SELECT * INTO v_job FROM jobqueue.job WHERE id = v_job_id AND status IN ('queued', 'retrying');
    IF FOUND AND NOT jobqueue._admits_start(v_job.queue, v_job.organization_id, v_job.job_type)
    THEN
        RETURN NULL;
    END IF;
    -- The running attempt lives on the job row until it ends (its attempt row is written then).
    -- Started when the job was seen runnable, not when the fetch's transaction began: a job
    -- released by its dependency's end must not start before that end (see fetch_vehicles).
    v_started_at := clock_timestamp();
    UPDATE jobqueue.job
    SET status = 'running', attempt = attempt + 1,
        started_at = coalesce(started_at, v_started_at), next_retry_at = NULL,
        attempt_started_at = v_started_at, attempt_worker_id = NEW.worker_id,
        attempt_vehicle_id = NEW.id, attempt_held_at = NULL, updated_at = now()
    WHERE id = v_job_id AND status IN ('queued', 'retrying')
    RETURNING * INTO v_job;
    IF FOUND THEN
        -- Everything the bridge needs to run the handler rides on the vehicle, so running a
        -- job costs no query beyond procrastinate's fetch and the outcome's finish.
        NEW.args := NEW.args || (
            SELECT jsonb_build_object(
                'attempt', v_job.attempt, 'job_type', v_job.job_type,
                'timeout', extract(epoch FROM v_job.timeout), 'handler', t.handler,
                'params', v_job.params::text, 'organization', o.name,
                'checkpoint', v_job.checkpoint::text, 'execution', t.execution)
            FROM jobqueue.job_type AS t, jobqueue.organization AS o
            WHERE t.name = v_job.job_type AND o.id = v_job.organization_id);
    ELSE
        NEW.args := NEW.args || jsonb_build_object('attempt', NULL);
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS tg_procrastinate_jobs__before_fetch ON procrastinate.procrastinate_jobs;
CREATE TRIGGER tg_procrastinate_jobs__before_fetch
    BEFORE UPDATE OF status ON procrastinate.procrastinate_jobs
    FOR EACH ROW
    WHEN (OLD.status = 'todo' AND NEW.status = 'doing' AND NEW.task_name = 'jobqueue.run'
          -- fetch_vehicles starts its attempts itself
          AND current_setting('jobqueue.claiming', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION jobqueue._tg_vehicle__before_fetch();

-- The vehicles fetch_vehicles may take, locked: procrastinate_fetch_job_v2's choice for a
-- batch. The vehicle table fills and empties faster than autovacuum analyzes it, so its
-- statistics are always stale (often "empty" while thousands wait), and with them the planner
-- sorts every waiting vehicle to take ten. Walking the priority index in order does not
-- depend on them; these settings hold for this query only.
CREATE OR REPLACE FUNCTION jobqueue._claimable_vehicles(
    p_queues character varying[], p_max_count integer
) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
SET search_path = procrastinate, pg_catalog, pg_temp
SET enable_bitmapscan = off
SET enable_sort = off
-- The generic plan walks procrastinate's priority index like the custom ones do, but plpgsql
-- keeps choosing custom plans here (the NULL test of the queues folds away in them), and
-- planning anew on every claim was a twentieth of the database's time in a drain.
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN (
        SELECT array_agg(c.id)
        FROM (
            SELECT v.id
            FROM procrastinate.procrastinate_jobs AS v
            WHERE v.status = 'todo'
              AND (p_queues IS NULL OR v.queue_name = ANY (p_queues))
              AND (v.scheduled_at IS NULL OR v.scheduled_at <= now())
              AND (v.lock IS NULL OR NOT EXISTS (
                  SELECT FROM procrastinate.procrastinate_jobs AS other
                  WHERE other.lock = v.lock
                    AND (other.status = 'doing'
                         OR (other.status = 'todo'
                             AND (other.priority > v.priority
                                  OR (other.priority = v.priority AND other.id < v.id))))))
            ORDER BY v.priority DESC, v.id ASC
            LIMIT p_max_count
            FOR UPDATE OF v SKIP LOCKED
        ) AS c);
END
$$;

-- procrastinate's fetch for up to max_count vehicles in one round trip, with the attempts of
-- their jobs started set-based: one UPDATE of the jobs, which also records each running
-- attempt's worker, vehicle and start on its job (so the lifecycle trigger writes the 'started'
-- events once for the batch; the attempt row is written when the attempt ends), and one UPDATE
-- of the vehicles. Which vehicles it may take follows procrastinate_fetch_job_v2: todo and due, in
-- the given queues, by priority then id, skipping rows other workers hold, and never a job
-- whose procrastinate lock is taken by a running job or an earlier waiting one (so a batch
-- holds at most one job per lock) -- unless several organizations have runnable jobs in the
-- queues or a pause or cap applies: then, within a priority, organizations take turns, and
-- paused or capped jobs wait (_choose_vehicles, claim.sql). Other tasks' vehicles
-- (maintenance) are claimed unchanged.
CREATE OR REPLACE FUNCTION jobqueue.fetch_vehicles(
    queues character varying[], worker_id bigint, max_count integer
) RETURNS SETOF procrastinate.procrastinate_jobs
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
SET random_page_cost = 1.1  -- see finish_attempts
SET enable_seqscan = off
SET enable_bitmapscan = off
-- Tells the fetch trigger that this claim starts its attempts itself; restored on return.
SET jobqueue.claiming = 'on'
AS $$
#variable_conflict use_column
DECLARE
    v_ids bigint[];
    v_vehicles bigint[];
    v_jobs bigint[];
    v_shares jsonb;
    v_started_at timestamptz;
BEGIN
    IF max_count IS NULL OR max_count NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'max_count must be between 1 and 1000, got %', quote_nullable(max_count)
            USING ERRCODE = 'JQV03';
    END IF;
    -- The FIFO walk of _claimable_vehicles, or the fair claim when organizations share the
    -- queues or a pause or cap applies (claim.sql).
    SELECT c.vehicle_ids, c.shares INTO v_ids, v_shares
    FROM jobqueue._choose_vehicles(queues, max_count) AS c;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    -- The vehicles' jobs, by id. Every later statement finds them through these arrays by
    -- primary key: joined any other way, the planner may walk every active job to find ten.
    SELECT array_agg(m.vehicle_id ORDER BY m.job_id), array_agg(m.job_id ORDER BY m.job_id)
    INTO v_vehicles, v_jobs
    FROM (
        SELECT v.id AS vehicle_id, (v.args ->> 'job_id')::bigint AS job_id
        FROM procrastinate.procrastinate_jobs AS v
        WHERE v.id = ANY (v_ids) AND v.task_name = 'jobqueue.run'
    ) AS m;
    -- A job no longer runnable (canceled since its vehicle was deferred) gets attempt null,
    -- and the bridge drops its vehicle.
    -- The UPDATE locks the jobs in id order, as finish_attempts and the bulk actions do, with
    -- no lock statement (and WAL record) of its own: "id = ANY" on the primary key is an index
    -- scan, which visits the array's ids in key order (seq and bitmap scans are off here).
    -- The clock after the jobs were chosen, not now() (the transaction's start): a job that
    -- its dependency's end released was chosen after that end committed, and its start must
    -- not come before the dependency's finished_at (that end's now()).
    v_started_at := clock_timestamp();
    RETURN QUERY
    WITH started AS (
        UPDATE jobqueue.job AS j
        SET status = 'running', attempt = j.attempt + 1,
            started_at = coalesce(j.started_at, v_started_at), next_retry_at = NULL,
            attempt_started_at = v_started_at, attempt_worker_id = fetch_vehicles.worker_id,
            attempt_vehicle_id = v_vehicles[array_position(v_jobs, j.id)], attempt_held_at = NULL,
            updated_at = now()
        WHERE j.id = ANY (v_jobs) AND j.status IN ('queued', 'retrying')
        RETURNING j.id, j.attempt, j.organization_id, j.job_type, j.timeout, j.params,
                  j.checkpoint, j.attempt_vehicle_id AS vehicle_id
    ), ride AS (
        -- Everything the bridge needs to run the handler, as the fetch trigger puts it too.
        SELECT s.vehicle_id, jsonb_build_object(
                   'attempt', s.attempt, 'job_type', s.job_type,
                   'timeout', extract(epoch FROM s.timeout), 'handler', t.handler,
                   'params', s.params::text, 'organization', o.name,
                   'checkpoint', s.checkpoint::text, 'execution', t.execution) AS args
        FROM started AS s
        JOIN jobqueue.job_type AS t ON t.name = s.job_type
        JOIN jobqueue.organization AS o ON o.id = s.organization_id
    )
    -- The ride goes back to the worker but is not stored: the vehicle row keeps its args, so
    -- its new version differs from the old only in status and worker, and the WAL carries
    -- little more than that.
    UPDATE procrastinate.procrastinate_jobs AS v
    SET status = 'doing', worker_id = fetch_vehicles.worker_id
    FROM unnest(v_ids) AS i (id)
    LEFT JOIN ride AS r ON r.vehicle_id = i.id
    WHERE v.id = i.id
    RETURNING v.id, v.queue_name, v.task_name, v.priority, v.lock, v.queueing_lock,
              CASE WHEN v.task_name = 'jobqueue.run'
                   THEN v.args || coalesce(r.args, jsonb_build_object('attempt', NULL))
                   ELSE v.args END,
              v.status, v.scheduled_at, v.attempts, v.abort_requested, v.worker_id;
    IF v_shares IS NOT NULL THEN
        -- The round robin moves on for the organizations whose jobs just started.
        PERFORM jobqueue._record_service(v_shares, v_jobs);
    END IF;
END
$$;

-- finish_attempts, then fetch_vehicles, in one call and one transaction: a worker that
-- claims as its jobs end (one at a time, at concurrency 1) records their outcomes on the way
-- instead of in a round trip of their own. Fenced-off outcomes are kept as finish_attempts
-- keeps them, and named in a WARNING (the worker logs it). The claim sees what the finish
-- did: a dependent it released may be among the vehicles claimed.
CREATE OR REPLACE FUNCTION jobqueue.finish_and_fetch(
    outcomes jsonb, queues character varying[], worker_id bigint, max_count integer
) RETURNS SETOF procrastinate.procrastinate_jobs
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_fenced text;
BEGIN
    SELECT string_agg(format('attempt %s of job %s', f.attempt, f.job_id), ', ')
    INTO v_fenced
    FROM jobqueue.finish_attempts(finish_and_fetch.outcomes) AS f
    WHERE NOT f.accepted;
    IF v_fenced IS NOT NULL THEN
        RAISE WARNING '% no longer current; the outcome was kept on the attempt row only',
            v_fenced;
    END IF;
    RETURN QUERY SELECT * FROM jobqueue.fetch_vehicles(
        finish_and_fetch.queues, finish_and_fetch.worker_id, finish_and_fetch.max_count);
END
$$;

-- One outcome; the building block of finish_attempts. Returns the job's status after it, or
-- NULL when the attempt was fenced off (its outcome then lands in attempt.late_outcome only).
CREATE OR REPLACE FUNCTION jobqueue._finish_attempt(
    p_job_id bigint, p_attempt integer, p_outcome jobqueue.attempt_outcome, p_result jsonb,
    p_error text, p_traceback text, p_retryable boolean
) RETURNS jobqueue.job_status
LANGUAGE plpgsql
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_job jobqueue.job;
    v_type jobqueue.job_type;
    v_status jobqueue.job_status;
BEGIN
    -- 'lost' comes from a worker that stops before its attempts end (after its grace period).
    IF coalesce(jobqueue._json_too_deep(p_result), false) THEN
        -- as in _outcome_items
        p_outcome := 'failed';
        p_result := NULL;
        p_error := 'the handler''s result is nested more than 100 levels deep';
        p_retryable := false;
    END IF;
    IF p_outcome IS NULL THEN
        RAISE EXCEPTION 'outcome must be completed, failed, timed_out, canceled or lost'
            USING ERRCODE = 'JQV03';
    END IF;
    SELECT * INTO v_job FROM jobqueue.job WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND OR v_job.status <> 'running' OR v_job.attempt <> p_attempt THEN
        UPDATE jobqueue.attempt
        SET late_outcome = jsonb_strip_nulls(jsonb_build_object(
            'outcome', p_outcome, 'error', left(p_error, 10000), 'result', p_result,
            'reported_at', now()))
        WHERE job_id = p_job_id AND attempt = p_attempt AND late_outcome IS NULL;
        RETURN NULL;
    END IF;

    -- The attempt's one row, from the facts its job carried while it ran.
    INSERT INTO jobqueue.attempt (job_id, attempt, organization_id, job_type, worker_id,
                                  procrastinate_job_id, started_at, held_at, finished_at,
                                  outcome, error, traceback)
    VALUES (v_job.id, v_job.attempt, v_job.organization_id, v_job.job_type,
            v_job.attempt_worker_id, v_job.attempt_vehicle_id, v_job.attempt_started_at,
            v_job.attempt_held_at, now(), p_outcome, left(p_error, 10000),
            left(p_traceback, 100000));

    IF p_outcome = 'completed' THEN
        v_status := 'completed';
    ELSIF p_outcome = 'canceled' OR v_job.cancel_requested THEN
        v_status := 'canceled';
    ELSIF coalesce(p_retryable, true) AND v_job.attempt - v_job.retry_base <= v_job.max_retries THEN
        v_status := 'retrying';
    ELSE
        v_status := 'dead';
    END IF;

    IF v_status IN ('retrying', 'completed') THEN
        SELECT * INTO v_type FROM jobqueue.job_type WHERE name = v_job.job_type;
    END IF;
    UPDATE jobqueue.job
    SET status = v_status,
        result = CASE WHEN v_status = 'completed' THEN p_result ELSE result END,
        progress = CASE WHEN v_status = 'completed' THEN 100 ELSE progress END,
        -- A job that completes after failed attempts keeps the last of those errors: it is
        -- the job's history ("it failed, then succeeded"), and status says how it ended.
        last_error = CASE WHEN v_status = 'completed' THEN last_error
                          ELSE coalesce(left(p_error, 10000), p_outcome::text) END,
        next_retry_at = CASE WHEN v_status = 'retrying'
                             THEN now() + jobqueue._backoff(v_type.backoff_base,
                                                            v_type.backoff_max, v_job.attempt)
                        END,
        finished_at = CASE WHEN v_status IN ('completed', 'dead', 'canceled') THEN now() END,
        -- as in finish_attempts
        job_hash = CASE WHEN v_status = 'completed' AND v_type.dedup_window IS NULL
                        THEN NULL ELSE job_hash END,
        attempt_started_at = NULL, attempt_worker_id = NULL, attempt_vehicle_id = NULL,
        attempt_held_at = NULL,
        updated_at = now()
    WHERE id = p_job_id;
    RETURN v_status;
END
$$;

-- The items of a finish_attempts batch, in the order given; "repeated" marks a second item
-- for a job already named earlier in the batch (only the first can be accepted).
CREATE OR REPLACE FUNCTION jobqueue._outcome_items(p_outcomes jsonb)
RETURNS TABLE (job_id bigint, attempt integer, outcome jobqueue.attempt_outcome, result jsonb,
               error text, traceback text, retryable boolean, ord bigint, repeated boolean)
-- plpgsql rather than sql: its plan is kept for the session, where a sql function called
-- from FROM is parsed and planned again on every call.
LANGUAGE plpgsql IMMUTABLE
-- A batch is tens of outcomes, not the thousand the planner assumes of a set-returning
-- function: with that guess it hashes the whole job and attempt tables instead of looking
-- the few rows up by primary key.
ROWS 10
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
BEGIN
    -- A result nested deeper than any reader takes is not stored: the attempt fails for good,
    -- as a result JSON cannot encode does in the worker.
    RETURN QUERY
    SELECT x.job_id, x.attempt,
           CASE WHEN x.deep THEN 'failed'::jobqueue.attempt_outcome ELSE x.outcome END,
           CASE WHEN x.deep THEN NULL ELSE x.result END,
           CASE WHEN x.deep THEN 'the handler''s result is nested more than 100 levels deep'
                ELSE x.error END,
           x.traceback, x.retryable AND NOT x.deep, x.ord,
           row_number() OVER (PARTITION BY x.job_id ORDER BY x.ord) > 1
    FROM (SELECT r.*, coalesce(jobqueue._json_too_deep(r.result), false) AS deep
          FROM ROWS FROM (jsonb_to_recordset(p_outcomes) AS (
                  job_id bigint, attempt integer, outcome jobqueue.attempt_outcome,
                  result jsonb, error text, traceback text, retryable boolean))
               WITH ORDINALITY AS r (job_id, attempt, outcome, result, error, traceback,
                                     retryable, ord)) AS x;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.finish_attempts(outcomes jsonb)
RETURNS TABLE (job_id bigint, attempt integer, accepted boolean, status jobqueue.job_status)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
-- The rows a batch touches are found by primary key and are hot in cache; at the default
-- random_page_cost the planner prefers hashing a whole table of a few thousand rows to ten
-- index lookups. The same holds for fetch_vehicles.
SET random_page_cost = 1.1
-- A session keeps its plans, and a plan made while the attempt table was nearly empty (the
-- start of a drain, statistics not yet gathered) scans it whole on every later call, at
-- tens of milliseconds once it holds thousands of rows. No statement here needs a scan.
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    v_batch bigint[];
BEGIN
    IF outcomes IS NULL OR jsonb_typeof(outcomes) <> 'array' THEN
        RAISE EXCEPTION 'outcomes must be a JSON array' USING ERRCODE = 'JQV03';
    END IF;
    IF EXISTS (SELECT FROM jsonb_to_recordset(outcomes) AS x (outcome jobqueue.attempt_outcome)
               WHERE x.outcome IS NULL) THEN
        RAISE EXCEPTION 'outcome must be completed, failed, timed_out, canceled or lost'
            USING ERRCODE = 'JQV03';
    END IF;
    -- Lock the batch's jobs and the waiting dependents their ends may release or cancel, all
    -- in one id order, before changing any: two workers whose batches share dependents would
    -- otherwise lock those dependents in crossing orders and deadlock.
    -- One array of ids, looked up by primary key: ids from subqueries or an OR of the two
    -- conditions make the planner scan the whole job table, history included, on every finish.
    v_batch := ARRAY(SELECT x.job_id FROM jsonb_to_recordset(outcomes) AS x (job_id bigint));
    PERFORM FROM jobqueue.job AS j
    WHERE j.id = ANY (v_batch || ARRAY(SELECT d.job_id FROM jobqueue.job_dependency AS d
                                       WHERE d.depends_on_id = ANY (v_batch)))
      AND (j.status = 'waiting' OR j.id = ANY (v_batch))
    ORDER BY j.id
    FOR UPDATE;

    -- Fenced-off outcomes first: their attempt is no longer the job's running one (or the
    -- outcome repeats an earlier item of this batch). They are kept on the attempt row only:
    -- an ended attempt's here; a repeat of the attempt this batch ends, on the row the
    -- statement below writes; a repeat of an attempt still running (the first item was
    -- fenced off) has no row to land on and is dropped.
    UPDATE jobqueue.attempt AS a
    SET late_outcome = jsonb_strip_nulls(jsonb_build_object(
            'outcome', x.outcome, 'error', left(x.error, 10000), 'result', x.result,
            'reported_at', now()))
    FROM jobqueue._outcome_items(outcomes) AS x
    LEFT JOIN jobqueue.job AS j ON j.id = x.job_id
    WHERE a.job_id = x.job_id AND a.attempt = x.attempt AND a.late_outcome IS NULL
      -- The batch's ids as an index condition: planned while the attempt table looked empty,
      -- the join otherwise walks every attempt row once per item.
      AND a.job_id = ANY (v_batch)
      AND (x.repeated OR j.id IS NULL OR j.status <> 'running' OR j.attempt <> x.attempt);

    -- Then every accepted outcome in one statement, so the lifecycle trigger runs once for
    -- the batch: events, retries' vehicles and released dependents are written set-based.
    RETURN QUERY
    WITH items AS (
        SELECT * FROM jobqueue._outcome_items(outcomes)
    ), decided AS (
        SELECT x.job_id, x.attempt, x.outcome, x.result, x.error, x.traceback, x.ord,
               NOT x.repeated AND j.status IS NOT DISTINCT FROM 'running'
                   AND j.attempt IS NOT DISTINCT FROM x.attempt AS accepted,
               CASE
                   WHEN x.outcome = 'completed' THEN 'completed'
                   WHEN x.outcome = 'canceled' OR j.cancel_requested THEN 'canceled'
                   WHEN coalesce(x.retryable, true)
                        AND j.attempt - j.retry_base <= j.max_retries THEN 'retrying'
                   ELSE 'dead'
               END::jobqueue.job_status AS next_status,
               t.backoff_base, t.backoff_max, t.dedup_window,
               j.organization_id, j.job_type, j.attempt_worker_id, j.attempt_vehicle_id,
               j.attempt_started_at, j.attempt_held_at
        FROM items AS x
        LEFT JOIN jobqueue.job AS j ON j.id = x.job_id
        LEFT JOIN jobqueue.job_type AS t ON t.name = j.job_type
    ), attempts AS (
        -- Each ended attempt's one row, from the facts its job carried while it ran, with the
        -- first repeat of its outcome in this batch as its late outcome.
        INSERT INTO jobqueue.attempt (job_id, attempt, organization_id, job_type, worker_id,
                                      procrastinate_job_id, started_at, held_at, finished_at,
                                      outcome, error, traceback, late_outcome)
        SELECT d.job_id, d.attempt, d.organization_id, d.job_type, d.attempt_worker_id,
               d.attempt_vehicle_id, d.attempt_started_at, d.attempt_held_at, now(),
               d.outcome, left(d.error, 10000), left(d.traceback, 100000),
               (SELECT jsonb_strip_nulls(jsonb_build_object(
                           'outcome', r.outcome, 'error', left(r.error, 10000),
                           'result', r.result, 'reported_at', now()))
                FROM items AS r
                WHERE r.repeated AND r.job_id = d.job_id AND r.attempt = d.attempt
                ORDER BY r.ord LIMIT 1)
        FROM decided AS d
        WHERE d.accepted
        ORDER BY d.job_id
    ), jobs AS (
        UPDATE jobqueue.job AS j
        SET status = d.next_status,
            result = CASE WHEN d.next_status = 'completed' THEN d.result ELSE j.result END,
            progress = CASE WHEN d.next_status = 'completed' THEN 100 ELSE j.progress END,
            -- A job that completes after failed attempts keeps the last of those errors: it
            -- is the job's history ("it failed, then succeeded"), and status says how it ended.
            last_error = CASE WHEN d.next_status = 'completed' THEN j.last_error
                              ELSE coalesce(left(d.error, 10000), d.outcome::text) END,
            next_retry_at = CASE WHEN d.next_status = 'retrying'
                                 THEN now() + jobqueue._backoff(d.backoff_base, d.backoff_max,
                                                                j.attempt)
                            END,
            finished_at = CASE WHEN d.next_status IN ('completed', 'dead', 'canceled')
                               THEN now() END,
            -- A completed job's hash only serves its type's dedup window; without one, it
            -- is dropped, and the job stays out of job_completed_hash_idx.
            job_hash = CASE WHEN d.next_status = 'completed' AND d.dedup_window IS NULL
                            THEN NULL ELSE j.job_hash END,
            -- the attempt is on its row now
            attempt_started_at = NULL, attempt_worker_id = NULL, attempt_vehicle_id = NULL,
            attempt_held_at = NULL,
            updated_at = now()
        FROM decided AS d
        WHERE d.accepted AND j.id = d.job_id
    )
    SELECT d.job_id, d.attempt, d.accepted, CASE WHEN d.accepted THEN d.next_status END
    FROM decided AS d
    ORDER BY d.ord;

    -- The attempts' vehicles are done with. Deleting them here spares the worker
    -- procrastinate's own finish round trip (the bridge skips it); vehicles of fenced-off
    -- attempts are usually gone already (the rescuer deletes them).
    DELETE FROM procrastinate.procrastinate_jobs AS p
    USING jobqueue.attempt AS a, jobqueue._outcome_items(outcomes) AS x
    WHERE a.job_id = x.job_id AND a.attempt = x.attempt AND p.id = a.procrastinate_job_id
      AND a.job_id = ANY (v_batch)
      AND p.status = 'doing';
END
$$;

CREATE OR REPLACE FUNCTION jobqueue._raise_stale(p_job_id bigint, p_attempt integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RAISE EXCEPTION 'attempt % of job % is no longer current', p_attempt, p_job_id
        USING ERRCODE = 'JQS01';
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.complete_attempt(
    job_id bigint, attempt integer, result jsonb DEFAULT NULL
) RETURNS jobqueue.job_status
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_status jobqueue.job_status := jobqueue._finish_attempt(
        complete_attempt.job_id, complete_attempt.attempt, 'completed', complete_attempt.result,
        NULL, NULL, NULL);
BEGIN
    IF v_status IS NULL THEN
        PERFORM jobqueue._raise_stale(complete_attempt.job_id, complete_attempt.attempt);
    END IF;
    RETURN v_status;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.fail_attempt(
    job_id bigint, attempt integer, error text, traceback text DEFAULT NULL,
    retryable boolean DEFAULT true, outcome text DEFAULT 'failed'
) RETURNS jobqueue.job_status
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_status jobqueue.job_status;
BEGIN
    IF fail_attempt.outcome IS NULL
       OR fail_attempt.outcome NOT IN ('failed', 'timed_out', 'canceled') THEN
        RAISE EXCEPTION 'outcome must be failed, timed_out or canceled, got %',
            quote_nullable(fail_attempt.outcome) USING ERRCODE = 'JQV03';
    END IF;
    v_status := jobqueue._finish_attempt(
        fail_attempt.job_id, fail_attempt.attempt, fail_attempt.outcome::jobqueue.attempt_outcome,
        NULL, fail_attempt.error, fail_attempt.traceback, fail_attempt.retryable);
    IF v_status IS NULL THEN
        PERFORM jobqueue._raise_stale(fail_attempt.job_id, fail_attempt.attempt);
    END IF;
    RETURN v_status;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.report_progress(
    job_id bigint, attempt integer, percent integer, message text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_job jobqueue.job;
BEGIN
    IF percent IS NULL OR percent NOT BETWEEN 0 AND 100 THEN
        RAISE EXCEPTION 'percent must be between 0 and 100, got %', quote_nullable(percent)
            USING ERRCODE = 'JQV03';
    END IF;
    UPDATE jobqueue.job AS j
    SET progress = report_progress.percent, progress_message = left(report_progress.message, 1000),
        updated_at = now()
    WHERE j.id = report_progress.job_id AND j.status = 'running'
      AND j.attempt = report_progress.attempt
    RETURNING * INTO v_job;
    IF NOT FOUND THEN
        PERFORM jobqueue._raise_stale(report_progress.job_id, report_progress.attempt);
    END IF;
    PERFORM jobqueue._log_events(
        ARRAY[v_job.organization_id], ARRAY[v_job.id], ARRAY['progress'],
        ARRAY[jsonb_strip_nulls(jsonb_build_object(
            'status', 'running', 'attempt', v_job.attempt, 'percent', v_job.progress,
            'message', left(v_job.progress_message, 200)))]);
    -- The answer doubles as the cancel check, so a handler that reports progress learns of a
    -- cancel request without another round trip.
    RETURN v_job.cancel_requested;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.save_checkpoint(
    job_id bigint, attempt integer, checkpoint jsonb
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF octet_length(save_checkpoint.checkpoint::text) > 1048576 THEN
        RAISE EXCEPTION 'a checkpoint is at most 1 MiB' USING ERRCODE = 'JQV06';
    END IF;
    IF jobqueue._json_too_deep(save_checkpoint.checkpoint) THEN
        RAISE EXCEPTION 'a checkpoint is nested at most 100 levels deep' USING ERRCODE = 'JQV03';
    END IF;
    UPDATE jobqueue.job AS j SET checkpoint = save_checkpoint.checkpoint, updated_at = now()
    WHERE j.id = save_checkpoint.job_id AND j.status = 'running'
      AND j.attempt = save_checkpoint.attempt;
    IF NOT FOUND THEN
        PERFORM jobqueue._raise_stale(save_checkpoint.job_id, save_checkpoint.attempt);
    END IF;
END
$$;

-- A worker still runs these attempts' handlers, past their deadline or a cancel request (a
-- handler that cannot be stopped: inline mode), or while it kills them (process mode): their
-- attempts stay open, and the rescuer leaves them alone for stale_after after the last report.
-- Returns how many open attempts it found. No worker id: a worker restarted after a database
-- error reports the handlers its predecessor left running in the same process.
CREATE OR REPLACE FUNCTION jobqueue.hold_attempts(job_ids bigint[], attempts integer[])
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_count integer;
BEGIN
    IF job_ids IS NULL OR attempts IS NULL
       OR cardinality(job_ids) <> cardinality(attempts) OR cardinality(job_ids) > 10000 THEN
        RAISE EXCEPTION 'job_ids and attempts must be arrays of the same length (at most 10000)'
            USING ERRCODE = 'JQV03';
    END IF;
    -- A running attempt's facts are on its job. Locked in id order, as the batch functions do.
    UPDATE jobqueue.job AS j SET attempt_held_at = now()
    WHERE j.id IN (SELECT l.id FROM jobqueue.job AS l
                   JOIN unnest(job_ids, attempts) AS h (job_id, attempt)
                     ON l.id = h.job_id AND l.attempt = h.attempt
                   WHERE l.status = 'running'
                   ORDER BY l.id
                   FOR UPDATE OF l)
      AND j.status = 'running';
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.job_checkpoint(job_id bigint) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT j.checkpoint FROM jobqueue.job AS j WHERE j.id = job_checkpoint.job_id
$$;
