-- Recurring jobs: schedules are rows, and every tick a schedule fired is a row too.
--
-- A schedule names a job type, params and an organization, a cron expression and the time
-- zone it is read in. The workers' ticker computes the ticks (sql/schedules.sql says who does
-- what); the primary key of schedule_tick, (schedule, tick), is what makes one job per tick
-- whatever the number of workers trying.

CREATE TABLE jobqueue.schedule (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id bigint NOT NULL REFERENCES jobqueue.organization (id),
    name text NOT NULL,
    job_type text NOT NULL REFERENCES jobqueue.job_type (name),
    params jsonb NOT NULL DEFAULT '{}',
    priority integer,                      -- NULL: the job type's
    dedup boolean NOT NULL DEFAULT true,   -- as submit_job's dedup
    cron text NOT NULL,
    timezone text NOT NULL DEFAULT 'UTC',
    enabled boolean NOT NULL DEFAULT true,
    missed text NOT NULL DEFAULT 'skip',   -- ticks found later than grace: skip | catch_up
    catch_up_limit integer NOT NULL DEFAULT 1,
    grace interval NOT NULL DEFAULT '1 minute',
    version integer NOT NULL DEFAULT 1,    -- bumped by every change the ticker must see
    ticked_until timestamptz NOT NULL DEFAULT now(),  -- every tick up to here is handled
    next_run_at timestamptz,               -- NULL until the ticker computed it
    last_tick_at timestamptz,
    last_run_at timestamptz,
    last_job_id bigint,
    last_error text,
    created_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedule_name_key UNIQUE (organization_id, name),
    CONSTRAINT schedule_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    CONSTRAINT schedule_params_check CHECK (jsonb_typeof(params) = 'object'),
    CONSTRAINT schedule_priority_check CHECK (priority BETWEEN -1000 AND 1000),
    CONSTRAINT schedule_missed_check CHECK (missed IN ('skip', 'catch_up')),
    CONSTRAINT schedule_catch_up_limit_check CHECK (catch_up_limit BETWEEN 1 AND 100),
    CONSTRAINT schedule_grace_check CHECK (grace BETWEEN interval '1 second' AND interval '1 day')
);
-- The ticker's question: which enabled schedules are due (or not yet planned)?
CREATE INDEX schedule_due_idx ON jobqueue.schedule (next_run_at NULLS FIRST) WHERE enabled;

CREATE TABLE jobqueue.schedule_tick (
    schedule_id bigint NOT NULL REFERENCES jobqueue.schedule (id) ON DELETE CASCADE,
    tick_at timestamptz NOT NULL,
    job_id bigint,                         -- no foreign key: cleanup deletes old jobs
    outcome text NOT NULL,
    error text,
    fired_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedule_tick_pkey PRIMARY KEY (schedule_id, tick_at),
    CONSTRAINT schedule_tick_outcome_check
        CHECK (outcome IN ('submitted', 'duplicate', 'failed', 'manual'))
);

-- What the schedule functions answer with: the schedule, its organization by name, and the
-- status of the last job a tick made.
CREATE TYPE jobqueue.schedule_info AS (
    id bigint,
    name text,
    organization text,
    job_type text,
    params jsonb,
    priority integer,
    dedup boolean,
    cron text,
    timezone text,
    enabled boolean,
    missed text,
    catch_up_limit integer,
    grace interval,
    next_run_at timestamptz,
    last_tick_at timestamptz,
    last_run_at timestamptz,
    last_job_id bigint,
    last_job_status text,
    last_error text,
    created_by text,
    created_at timestamptz,
    updated_at timestamptz
);

REVOKE ALL ON jobqueue.schedule, jobqueue.schedule_tick FROM PUBLIC;
