-- schedules.sql: recurring jobs. Schedules are rows, changed through these functions.
--
-- Owns:      schedules (create, update, enable/disable, delete, list, run now); the workers'
--            side of ticking them is schedule_ticks.sql.
-- Public:    create_schedule(name, job_type, cron, params, organization, timezone, enabled, ..., actor)
--            update_schedule(name, organization, job_type, cron, ..., actor)  -- NULL keeps a setting
--            set_schedule_enabled(name, organization, enabled, actor)
--            delete_schedule(name, organization, actor)
--            list_schedules(actor, organization)
--            run_schedule(name, organization, actor)   -- one job now, outside the ticks
-- Internal:  _schedule_infos(ids), _schedule_id(actor, organization, name),
--            _schedule_event(...), _check_schedule(row)
-- Ticks:     the workers compute them (jobqueue/tasks/schedules.py) from the expression
--            cron.sql checked, in the schedule's time zone, always against the database's
--            clock (claim_due_schedules returns now()), never a worker's. The primary key
--            of schedule_tick, (schedule_id, tick_at), makes one job per tick however many
--            workers fire the same tick; a schedule's ticks up to ticked_until are handled
--            (fired, or skipped by the missed-tick policy) and never fired again.
-- Jobs:      a tick's job is submitted through submit_job, so dedup, rate limits and the
--            live feed apply; a tick the submit refuses (rate limited, type disabled) is
--            recorded 'failed' with the error and is not retried.
-- Locks:     the schedule row (FOR UPDATE) while a tick is fired or a schedule changed;
--            claim_due_schedules skips rows another worker holds.
-- Raises:    JQV01 unknown job type, JQV02 params, JQV03 bad argument, JQV13 cron expression,
--            JQV14 time zone, JQA02 forbidden, JQN02 organization, JQN06 schedule not found,
--            JQC01 name taken.
-- Events:    schedule_created, schedule_updated, schedule_enabled, schedule_disabled,
--            schedule_deleted (job NULL); schedule_planned (the first next run after a
--            change); schedule_fired (job = the tick's job), schedule_tick_failed,
--            schedule_missed, schedule_failed.

CREATE OR REPLACE FUNCTION jobqueue._schedule_infos(p_ids bigint[])
RETURNS SETOF jobqueue.schedule_info
LANGUAGE sql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT s.id, s.name, o.name, s.job_type, s.params, s.priority, s.dedup, s.cron,
           s.timezone, s.enabled, s.missed, s.catch_up_limit, s.grace, s.next_run_at,
           s.last_tick_at, s.last_run_at, s.last_job_id, j.status::text, s.last_error,
           s.created_by, s.created_at, s.updated_at
    FROM unnest(p_ids) WITH ORDINALITY AS x (id, ord)
    JOIN jobqueue.schedule AS s ON s.id = x.id
    JOIN jobqueue.organization AS o ON o.id = s.organization_id
    LEFT JOIN jobqueue.job AS j ON j.id = s.last_job_id
    ORDER BY x.ord
$$;

-- The schedule's id, its row locked, when the actor may use its organization; JQN06 when the
-- organization has no schedule of that name.
CREATE OR REPLACE FUNCTION jobqueue._schedule_id(p_actor text, p_organization text, p_name text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
DECLARE
    v_org_id bigint := jobqueue._require_organization(p_actor, p_organization);
    v_id bigint;
BEGIN
    SELECT s.id INTO v_id FROM jobqueue.schedule AS s
    WHERE s.organization_id = v_org_id AND s.name = p_name
    FOR UPDATE;
    IF v_id IS NULL THEN
        RAISE EXCEPTION 'schedule % not found in "%"', quote_nullable(left(p_name, 130)),
            p_organization USING ERRCODE = 'JQN06';
    END IF;
    RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue._schedule_event(
    p_schedule jobqueue.schedule, p_type text, p_job_id bigint DEFAULT NULL,
    p_data jsonb DEFAULT '{}'
) RETURNS void
LANGUAGE sql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT jobqueue._log_events(
        ARRAY[p_schedule.organization_id], ARRAY[p_job_id], ARRAY[p_type],
        ARRAY[jsonb_build_object('schedule', p_schedule.name, 'schedule_id', p_schedule.id)
              || coalesce(p_data, '{}')])
$$;

-- Checks a schedule's settings as the table's constraints would, with the errors of the API.
CREATE OR REPLACE FUNCTION jobqueue._check_schedule(p_schedule jobqueue.schedule)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
BEGIN
    IF p_schedule.name IS NULL OR p_schedule.name !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' THEN
        RAISE EXCEPTION 'schedule name must be 1-128 letters, digits, "_", ".", ":" or "-", got %',
            quote_nullable(left(p_schedule.name, 130)) USING ERRCODE = 'JQV03';
    END IF;
    IF NOT EXISTS (SELECT FROM jobqueue.job_type AS t WHERE t.name = p_schedule.job_type) THEN
        RAISE EXCEPTION 'no job type named %', quote_nullable(left(p_schedule.job_type, 100))
            USING ERRCODE = 'JQV01';
    END IF;
    IF jsonb_typeof(p_schedule.params) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'params must be a JSON object' USING ERRCODE = 'JQV02';
    END IF;
    IF octet_length(p_schedule.params::text) > 262144 THEN
        RAISE EXCEPTION 'params are over 262144 bytes' USING ERRCODE = 'JQV06';
    END IF;
    IF jobqueue._json_too_deep(p_schedule.params) THEN
        RAISE EXCEPTION 'params are nested more than 100 levels deep' USING ERRCODE = 'JQV03';
    END IF;
    PERFORM jobqueue._cron_expression(p_schedule.cron);
    PERFORM jobqueue._check_timezone(p_schedule.timezone);
    IF p_schedule.priority NOT BETWEEN -1000 AND 1000 THEN
        RAISE EXCEPTION 'priority must be between -1000 and 1000' USING ERRCODE = 'JQV03';
    END IF;
    IF p_schedule.missed IS NULL OR p_schedule.missed NOT IN ('skip', 'catch_up') THEN
        RAISE EXCEPTION 'missed must be "skip" or "catch_up", got %',
            quote_nullable(left(p_schedule.missed, 40)) USING ERRCODE = 'JQV03';
    END IF;
    IF p_schedule.catch_up_limit IS NULL OR p_schedule.catch_up_limit NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'catch_up_limit must be between 1 and 100' USING ERRCODE = 'JQV03';
    END IF;
    IF p_schedule.grace IS NULL
       OR p_schedule.grace NOT BETWEEN interval '1 second' AND interval '1 day' THEN
        RAISE EXCEPTION 'grace must be between 1 second and 1 day' USING ERRCODE = 'JQV03';
    END IF;
    IF p_schedule.dedup IS NULL OR p_schedule.enabled IS NULL THEN
        RAISE EXCEPTION 'dedup and enabled must be true or false' USING ERRCODE = 'JQV03';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.create_schedule(
    name text,
    job_type text,
    cron text,
    params jsonb DEFAULT '{}',
    organization text DEFAULT NULL,
    timezone text DEFAULT 'UTC',
    enabled boolean DEFAULT true,
    priority integer DEFAULT NULL,
    dedup boolean DEFAULT true,
    missed text DEFAULT 'skip',
    catch_up_limit integer DEFAULT 1,
    grace interval DEFAULT '1 minute',
    actor text DEFAULT NULL
) RETURNS jobqueue.schedule_info
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_row jobqueue.schedule;
BEGIN
    v_row.organization_id := jobqueue._require_organization(actor, create_schedule.organization);
    v_row.name := create_schedule.name;
    v_row.job_type := create_schedule.job_type;
    v_row.params := coalesce(create_schedule.params, '{}');
    v_row.cron := btrim(create_schedule.cron, E' \t\n\r');
    v_row.timezone := create_schedule.timezone;
    v_row.enabled := create_schedule.enabled;
    v_row.priority := create_schedule.priority;
    v_row.dedup := create_schedule.dedup;
    v_row.missed := create_schedule.missed;
    v_row.catch_up_limit := create_schedule.catch_up_limit;
    v_row.grace := create_schedule.grace;
    PERFORM jobqueue._check_schedule(v_row);
    INSERT INTO jobqueue.schedule AS s (
        organization_id, name, job_type, params, priority, dedup, cron, timezone, enabled,
        missed, catch_up_limit, grace, created_by
    ) VALUES (
        v_row.organization_id, v_row.name, v_row.job_type, v_row.params, v_row.priority,
        v_row.dedup, v_row.cron, v_row.timezone, v_row.enabled, v_row.missed,
        v_row.catch_up_limit, v_row.grace, actor
    )
    ON CONFLICT ON CONSTRAINT schedule_name_key DO NOTHING
    RETURNING s.* INTO v_row;
    IF v_row.id IS NULL THEN
        RAISE EXCEPTION 'schedule "%" already exists in "%"', create_schedule.name,
            create_schedule.organization USING ERRCODE = 'JQC01';
    END IF;
    PERFORM jobqueue._schedule_event(v_row, 'schedule_created', NULL,
        jsonb_build_object('cron', v_row.cron, 'timezone', v_row.timezone,
                           'enabled', v_row.enabled));
    RETURN jobqueue._schedule_infos(ARRAY[v_row.id]);
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.update_schedule(
    name text,
    organization text,
    job_type text DEFAULT NULL,
    cron text DEFAULT NULL,
    params jsonb DEFAULT NULL,
    timezone text DEFAULT NULL,
    enabled boolean DEFAULT NULL,
    priority integer DEFAULT NULL,
    dedup boolean DEFAULT NULL,
    missed text DEFAULT NULL,
    catch_up_limit integer DEFAULT NULL,
    grace interval DEFAULT NULL,
    actor text DEFAULT NULL
) RETURNS jobqueue.schedule_info
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_id bigint := jobqueue._schedule_id(actor, update_schedule.organization,
                                         update_schedule.name);
    v_old jobqueue.schedule;
    v_new jobqueue.schedule;
    v_restart boolean;
BEGIN
    SELECT * INTO v_old FROM jobqueue.schedule AS s WHERE s.id = v_id;
    v_new := v_old;
    v_new.job_type := coalesce(update_schedule.job_type, v_old.job_type);
    v_new.cron := coalesce(btrim(update_schedule.cron, E' \t\n\r'), v_old.cron);
    v_new.params := coalesce(update_schedule.params, v_old.params);
    v_new.timezone := coalesce(update_schedule.timezone, v_old.timezone);
    v_new.enabled := coalesce(update_schedule.enabled, v_old.enabled);
    v_new.priority := coalesce(update_schedule.priority, v_old.priority);
    v_new.dedup := coalesce(update_schedule.dedup, v_old.dedup);
    v_new.missed := coalesce(update_schedule.missed, v_old.missed);
    v_new.catch_up_limit := coalesce(update_schedule.catch_up_limit, v_old.catch_up_limit);
    v_new.grace := coalesce(update_schedule.grace, v_old.grace);
    PERFORM jobqueue._check_schedule(v_new);
    -- A new expression or zone counts its ticks from now, and so does a schedule enabled
    -- again: the ticks it had while disabled were not missed, they were not wanted.
    v_restart := v_new.cron IS DISTINCT FROM v_old.cron
        OR v_new.timezone IS DISTINCT FROM v_old.timezone
        OR (v_new.enabled AND NOT v_old.enabled);
    UPDATE jobqueue.schedule AS s SET
        job_type = v_new.job_type, cron = v_new.cron, params = v_new.params,
        timezone = v_new.timezone, enabled = v_new.enabled, priority = v_new.priority,
        dedup = v_new.dedup, missed = v_new.missed, catch_up_limit = v_new.catch_up_limit,
        grace = v_new.grace, version = s.version + 1, next_run_at = NULL, last_error = NULL,
        ticked_until = CASE WHEN v_restart THEN greatest(s.ticked_until, now())
                            ELSE s.ticked_until END,
        updated_at = now()
    WHERE s.id = v_id
    RETURNING s.* INTO v_new;
    PERFORM jobqueue._schedule_event(v_new,
        CASE WHEN v_new.enabled = v_old.enabled THEN 'schedule_updated'
             WHEN v_new.enabled THEN 'schedule_enabled' ELSE 'schedule_disabled' END,
        NULL, jsonb_build_object('cron', v_new.cron, 'timezone', v_new.timezone,
                                 'enabled', v_new.enabled));
    RETURN jobqueue._schedule_infos(ARRAY[v_id]);
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.set_schedule_enabled(
    name text, organization text, enabled boolean, actor text DEFAULT NULL
) RETURNS jobqueue.schedule_info
LANGUAGE sql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT * FROM jobqueue.update_schedule(
        name => set_schedule_enabled.name, organization => set_schedule_enabled.organization,
        enabled => coalesce(set_schedule_enabled.enabled, false),
        actor => set_schedule_enabled.actor)
$$;

CREATE OR REPLACE FUNCTION jobqueue.delete_schedule(
    name text, organization text, actor text DEFAULT NULL
) RETURNS jobqueue.schedule_info
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_id bigint := jobqueue._schedule_id(actor, delete_schedule.organization,
                                         delete_schedule.name);
    v_info jobqueue.schedule_info := jobqueue._schedule_infos(ARRAY[v_id]);
    v_row jobqueue.schedule;
BEGIN
    DELETE FROM jobqueue.schedule AS s WHERE s.id = v_id RETURNING s.* INTO v_row;
    PERFORM jobqueue._schedule_event(v_row, 'schedule_deleted');
    RETURN v_info;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.list_schedules(
    actor text DEFAULT NULL, organization text DEFAULT NULL
) RETURNS SETOF jobqueue.schedule_info
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_visible bigint[] := jobqueue._visible_organizations(actor);
    v_org_id bigint;
BEGIN
    IF list_schedules.organization IS NOT NULL THEN
        v_org_id := jobqueue._require_organization(actor, list_schedules.organization);
    END IF;
    RETURN QUERY SELECT * FROM jobqueue._schedule_infos(ARRAY(
        SELECT s.id FROM jobqueue.schedule AS s
        JOIN jobqueue.organization AS o ON o.id = s.organization_id
        WHERE (v_visible IS NULL OR s.organization_id = ANY (v_visible))
          AND (v_org_id IS NULL OR s.organization_id = v_org_id)
        ORDER BY o.name, s.name));
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.run_schedule(
    name text, organization text, actor text DEFAULT NULL
) RETURNS jobqueue.job_info
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_id bigint := jobqueue._schedule_id(actor, run_schedule.organization, run_schedule.name);
    v_row jobqueue.schedule;
    v_job jobqueue.job_info;
BEGIN
    SELECT * INTO v_row FROM jobqueue.schedule AS s WHERE s.id = v_id;
    -- clock_timestamp(): a run and a cron tick never share a key (ticks are whole seconds).
    SELECT (t.job).* INTO v_job FROM jobqueue._submit_tick(v_row, clock_timestamp(), true) AS t;
    IF v_job.id IS NULL THEN
        -- The submit's refusal, raised again now that the caller asked for this job.
        RETURN jobqueue.submit_job(
            job_type => v_row.job_type, params => v_row.params,
            organization => run_schedule.organization, priority => v_row.priority,
            dedup => v_row.dedup);
    END IF;
    RETURN v_job;
END
$$;

-- \df+ explains each public function with its header line.
COMMENT ON FUNCTION jobqueue.create_schedule(text, text, text, jsonb, text, text, boolean, integer, boolean, text, integer, interval, text) IS
    'create_schedule(name, job_type, cron, params, organization, timezone, enabled, ..., actor): a recurring job; the cron expression and time zone are checked here (JQV13, JQV14).';
COMMENT ON FUNCTION jobqueue.update_schedule(text, text, text, text, jsonb, text, boolean, integer, boolean, text, integer, interval, text) IS
    'update_schedule(name, organization, job_type, cron, ..., actor): change a schedule; NULL keeps a setting; a new cron or time zone counts ticks from now.';
COMMENT ON FUNCTION jobqueue.set_schedule_enabled(text, text, boolean, text) IS
    'set_schedule_enabled(name, organization, enabled, actor): pause or resume a schedule; ticks while disabled are not run later.';
COMMENT ON FUNCTION jobqueue.delete_schedule(text, text, text) IS
    'delete_schedule(name, organization, actor): remove a schedule and its tick history; its jobs stay.';
COMMENT ON FUNCTION jobqueue.list_schedules(text, text) IS
    'list_schedules(actor, organization): the schedules the actor may see, with next and last run and the last job''s status.';
COMMENT ON FUNCTION jobqueue.run_schedule(text, text, text) IS
    'run_schedule(name, organization, actor): submit the schedule''s job now, outside its ticks; returns the job.';
