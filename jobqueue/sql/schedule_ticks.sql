-- schedule_ticks.sql: the workers' side of recurring jobs, one job per tick.
--
-- Owns:      which schedules are due, and firing their ticks.
-- Worker:    claim_due_schedules(max_count)   -- locks the due schedules, SKIP LOCKED
--            fire_schedule(schedule_id, version, ticks, until, next_run_at, skipped, error)
-- Internal:  _submit_tick(schedule, tick_at, manual)  -- claims a tick by the key, submits its
--            job (run_schedule of schedules.sql uses it too)
-- Ticks:     computed by the workers (jobqueue/tasks/schedules.py) with cronsim from the
--            expression cron.sql checked and the now() claim_due_schedules returns; the
--            primary key (schedule_id, tick_at) of schedule_tick is claimed before a tick's job
--            is submitted, so a tick has one job whoever fires it, and how often.
-- States:    inserts jobs through submit_job ('queued').
-- Locks:     the schedule rows: FOR UPDATE SKIP LOCKED in the claim, FOR UPDATE in the fire.
-- Raises:    JQV03 bad argument; a tick's refused submit is recorded, not raised.
-- Events:    schedule_planned, schedule_fired, schedule_tick_failed, schedule_missed,
--            schedule_failed.

-- Claims a tick through the key of schedule_tick and submits its job, in a subtransaction:
-- a refusal (rate limit, disabled type) is recorded as the tick's error instead of undoing
-- the caller's other ticks. claimed is false when the tick was fired before.
CREATE OR REPLACE FUNCTION jobqueue._submit_tick(
    p_schedule jobqueue.schedule, p_tick_at timestamptz, p_manual boolean,
    OUT claimed boolean, OUT job jobqueue.job_info
)
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
DECLARE
    v_error text;
BEGIN
    INSERT INTO jobqueue.schedule_tick (schedule_id, tick_at, outcome)
    VALUES (p_schedule.id, p_tick_at, CASE WHEN p_manual THEN 'manual' ELSE 'submitted' END)
    ON CONFLICT ON CONSTRAINT schedule_tick_pkey DO NOTHING;
    claimed := FOUND;
    IF NOT claimed THEN
        RETURN;
    END IF;
    BEGIN
        job := jobqueue.submit_job(
            job_type => p_schedule.job_type, params => p_schedule.params,
            organization => (SELECT o.name FROM jobqueue.organization AS o
                             WHERE o.id = p_schedule.organization_id),
            priority => p_schedule.priority, dedup => p_schedule.dedup);
    EXCEPTION WHEN OTHERS THEN
        IF SQLSTATE NOT LIKE 'JQ%' THEN
            RAISE;
        END IF;
        v_error := SQLERRM;
    END;
    UPDATE jobqueue.schedule_tick AS k
    SET job_id = job.id, error = v_error,
        outcome = CASE WHEN v_error IS NOT NULL THEN 'failed' WHEN p_manual THEN 'manual'
                       WHEN job.duplicate THEN 'duplicate' ELSE 'submitted' END
    WHERE k.schedule_id = p_schedule.id AND k.tick_at = p_tick_at;
    IF v_error IS NOT NULL THEN
        PERFORM jobqueue._schedule_event(p_schedule, 'schedule_tick_failed', NULL,
            jsonb_build_object('tick_at', p_tick_at, 'error', v_error, 'manual', p_manual));
    ELSE
        PERFORM jobqueue._schedule_event(p_schedule, 'schedule_fired', job.id,
            jsonb_build_object('tick_at', p_tick_at, 'duplicate', job.duplicate,
                               'manual', p_manual));
    END IF;
    UPDATE jobqueue.schedule AS s
    SET last_run_at = now(), last_job_id = coalesce(job.id, s.last_job_id),
        last_tick_at = CASE WHEN p_manual THEN s.last_tick_at ELSE p_tick_at END,
        last_error = v_error
    WHERE s.id = p_schedule.id;
END
$$;

-- The enabled schedules due for planning (never planned, or next run reached), locked for
-- this transaction and skipped by any other; with the database's clock.
CREATE OR REPLACE FUNCTION jobqueue.claim_due_schedules(max_count integer DEFAULT 100)
RETURNS TABLE (
    id bigint, version integer, expression text, timezone text, missed text,
    catch_up_limit integer, grace interval, ticked_until timestamptz, now timestamptz
)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF max_count IS NULL OR max_count NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'max_count must be between 1 and 10000' USING ERRCODE = 'JQV03';
    END IF;
    RETURN QUERY
        SELECT s.id, s.version, jobqueue._cron_expression(s.cron), s.timezone, s.missed,
               s.catch_up_limit, s.grace, s.ticked_until, now()
        FROM jobqueue.schedule AS s
        WHERE s.enabled AND (s.next_run_at IS NULL OR s.next_run_at <= now())
        ORDER BY s.next_run_at NULLS FIRST, s.id
        LIMIT max_count
        FOR UPDATE OF s SKIP LOCKED;
END
$$;

-- Fires the ticks a worker computed for one schedule, each tick once: ticks at or before
-- ticked_until, or after both until and now(), are left out; the primary key refuses a tick
-- fired before. Then every tick up to until is handled, and the next run is next_run_at.
-- A plan made from an older version of the schedule fires nothing. With error set, the
-- schedule could not be planned: it keeps the error and waits for a change.
CREATE OR REPLACE FUNCTION jobqueue.fire_schedule(
    schedule_id bigint,
    version integer,
    ticks timestamptz[],
    until timestamptz,
    next_run_at timestamptz,
    skipped integer DEFAULT 0,
    error text DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_row jobqueue.schedule;
    v_until timestamptz := least(fire_schedule.until, now());
    v_tick timestamptz;
    v_fired integer := 0;
BEGIN
    SELECT * INTO v_row FROM jobqueue.schedule AS s
    WHERE s.id = fire_schedule.schedule_id FOR UPDATE;
    IF NOT FOUND OR v_row.version <> fire_schedule.version OR NOT v_row.enabled THEN
        RETURN 0;
    END IF;
    IF fire_schedule.error IS NOT NULL THEN
        UPDATE jobqueue.schedule AS s SET last_error = left(fire_schedule.error, 1000),
            next_run_at = 'infinity'
        WHERE s.id = v_row.id;
        PERFORM jobqueue._schedule_event(v_row, 'schedule_failed', NULL,
            jsonb_build_object('error', left(fire_schedule.error, 1000)));
        RETURN 0;
    END IF;
    IF coalesce(fire_schedule.skipped, 0) > 0 THEN
        PERFORM jobqueue._schedule_event(v_row, 'schedule_missed', NULL,
            jsonb_build_object('skipped', fire_schedule.skipped,
                               'after', v_row.ticked_until, 'until', v_until));
    END IF;
    FOR v_tick IN
        SELECT DISTINCT t FROM unnest(fire_schedule.ticks) AS t
        WHERE t > v_row.ticked_until AND t <= v_until
        ORDER BY t
    LOOP
        -- The key of schedule_tick decides: a tick fired before is not claimed again.
        IF (SELECT t.claimed FROM jobqueue._submit_tick(v_row, v_tick, false) AS t) THEN
            v_fired := v_fired + 1;
        END IF;
    END LOOP;
    UPDATE jobqueue.schedule AS s
    SET ticked_until = greatest(s.ticked_until, v_until),
        next_run_at = coalesce(fire_schedule.next_run_at, 'infinity')
    WHERE s.id = v_row.id;
    -- A new or changed schedule has no next run until this first plan: say when it is, so a
    -- live view shows it (later runs move on with schedule_fired).
    IF v_row.next_run_at IS NULL THEN
        PERFORM jobqueue._schedule_event(v_row, 'schedule_planned', NULL,
            jsonb_build_object('next_run_at', fire_schedule.next_run_at));
    END IF;
    -- Ticks are history once handled; a day of them is kept for inspection.
    DELETE FROM jobqueue.schedule_tick AS k
    WHERE k.schedule_id = v_row.id AND k.tick_at < v_until - interval '1 day';
    RETURN v_fired;
END
$$;

-- \df+ explains each public function with its header line.
COMMENT ON FUNCTION jobqueue.claim_due_schedules(integer) IS
    'claim_due_schedules(max_count): worker side; the due schedules, locked SKIP LOCKED, with the database''s now().';
COMMENT ON FUNCTION jobqueue.fire_schedule(bigint, integer, timestamp with time zone[], timestamp with time zone, timestamp with time zone, integer, text) IS
    'fire_schedule(schedule_id, version, ticks, until, next_run_at, skipped, error): worker side; one job per tick, once.';
