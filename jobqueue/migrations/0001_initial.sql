-- 0001_initial: the jobqueue schema. Tables, types, indexes, roles and grants only;
-- every function lives in jobqueue/sql/*.sql and is re-applied on each migrate.

CREATE SCHEMA IF NOT EXISTS jobqueue;

-- ---------------------------------------------------------------- enums

CREATE TYPE jobqueue.job_status AS ENUM (
    'waiting',    -- submitted with dependencies that are not all completed yet
    'queued',     -- runnable (or scheduled for run_at); a procrastinate job carries it to a worker
    'running',    -- a worker holds the current attempt
    'retrying',   -- the last attempt failed; the next one is scheduled for next_retry_at
    'completed',  -- terminal: the handler returned
    'dead',       -- terminal: out of attempts, or a non-retryable error
    'canceled'    -- terminal: canceled by a caller, or a dependency ended dead or canceled
);

CREATE TYPE jobqueue.attempt_outcome AS ENUM (
    'completed',  -- the handler returned
    'failed',     -- the handler raised
    'timed_out',  -- the job type's timeout passed
    'canceled',   -- a cancel request stopped it
    'lost'        -- its worker stopped heartbeating; the attempt was rescued
);

CREATE TYPE jobqueue.member_role AS ENUM ('member', 'admin');

-- The lifecycle, declared once: every legal status change and the event it emits.
-- A trigger on jobqueue.job refuses any UPDATE whose change is not listed here.
CREATE TABLE jobqueue.job_transition (
    from_status jobqueue.job_status NOT NULL,
    to_status jobqueue.job_status NOT NULL,
    event text NOT NULL,
    CONSTRAINT job_transition_pkey PRIMARY KEY (from_status, to_status)
);
INSERT INTO jobqueue.job_transition (from_status, to_status, event) VALUES
    ('waiting',  'queued',    'released'),       -- every dependency completed
    ('waiting',  'canceled',  'canceled'),       -- canceled, or a dependency ended dead or canceled
    ('queued',   'running',   'started'),
    ('queued',   'canceled',  'canceled'),
    ('running',  'completed', 'completed'),
    ('running',  'retrying',  'retry_scheduled'), -- failed, timed out or lost, with attempts left
    ('running',  'dead',      'dead'),            -- out of attempts, or not retryable
    ('running',  'canceled',  'canceled'),        -- the worker acknowledged a cancel request
    ('retrying', 'running',   'started'),
    ('retrying', 'canceled',  'canceled'),
    ('dead',     'queued',    'retried'),         -- manual retry, fresh attempts
    ('canceled', 'queued',    'retried');

-- ---------------------------------------------------------------- access

CREATE TABLE jobqueue.organization (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT organization_name_key UNIQUE (name),
    CONSTRAINT organization_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$')
);

CREATE TABLE jobqueue.app_user (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    is_admin boolean NOT NULL DEFAULT false,  -- an admin sees and acts on every organization
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT app_user_name_key UNIQUE (name),
    CONSTRAINT app_user_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$')
);

CREATE TABLE jobqueue.member (
    user_id bigint NOT NULL REFERENCES jobqueue.app_user (id) ON DELETE CASCADE,
    organization_id bigint NOT NULL REFERENCES jobqueue.organization (id) ON DELETE CASCADE,
    role jobqueue.member_role NOT NULL DEFAULT 'member',
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT member_pkey PRIMARY KEY (user_id, organization_id)
);
CREATE INDEX member_organization_idx ON jobqueue.member (organization_id);

CREATE TABLE jobqueue.api_token (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES jobqueue.app_user (id) ON DELETE CASCADE,
    name text NOT NULL,
    token_hash bytea NOT NULL,  -- sha256 of the secret; the secret itself is never stored
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz,
    CONSTRAINT api_token_hash_key UNIQUE (token_hash),
    CONSTRAINT api_token_name_check CHECK (length(name) BETWEEN 1 AND 200)
);
CREATE INDEX api_token_user_idx ON jobqueue.api_token (user_id);

-- ---------------------------------------------------------------- job types

CREATE TABLE jobqueue.job_type (
    name text PRIMARY KEY,
    handler text NOT NULL,               -- dotted path: package.module:function or package.module.function
    queue text NOT NULL DEFAULT 'default',
    priority integer NOT NULL DEFAULT 0,
    timeout interval NOT NULL DEFAULT '5 minutes',
    max_retries integer NOT NULL DEFAULT 3,
    backoff_base interval NOT NULL DEFAULT '1 second',
    backoff_max interval NOT NULL DEFAULT '10 minutes',
    dedup_window interval,               -- fold a submit into a job completed within this window
    rate_limit integer,                  -- at most rate_limit submits per rate_period per organization
    rate_period interval,
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_type_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$'),
    CONSTRAINT job_type_handler_check CHECK (
        handler ~ '^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)?$'
    ),
    -- procrastinate NOTIFYs on 'procrastinate_queue_v1#<queue>', and channel names stop at 63 bytes
    CONSTRAINT job_type_queue_check CHECK (queue ~ '^[A-Za-z0-9_.-]{1,40}$'),
    CONSTRAINT job_type_priority_check CHECK (priority BETWEEN -1000 AND 1000),
    CONSTRAINT job_type_timeout_check CHECK (timeout > interval '0' AND timeout <= interval '7 days'),
    CONSTRAINT job_type_max_retries_check CHECK (max_retries BETWEEN 0 AND 100),
    CONSTRAINT job_type_backoff_check CHECK (
        backoff_base >= interval '0' AND backoff_max >= backoff_base AND backoff_max <= interval '7 days'
    ),
    CONSTRAINT job_type_dedup_window_check CHECK (dedup_window IS NULL OR dedup_window > interval '0'),
    CONSTRAINT job_type_rate_limit_check CHECK (
        (rate_limit IS NULL AND rate_period IS NULL)
        OR (rate_limit > 0 AND rate_period > interval '0' AND rate_period <= interval '1 day')
    )
);

-- ---------------------------------------------------------------- jobs

CREATE TABLE jobqueue.job (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_type text NOT NULL REFERENCES jobqueue.job_type (name) ON UPDATE CASCADE,
    organization_id bigint NOT NULL REFERENCES jobqueue.organization (id),
    queue text NOT NULL,
    status jobqueue.job_status NOT NULL,
    priority integer NOT NULL,
    params jsonb NOT NULL DEFAULT '{}',
    job_hash bytea,                      -- sha256(type, organization, canonical params); NULL: no dedup
    attempt integer NOT NULL DEFAULT 0,  -- number of the current (or last) attempt
    retry_base integer NOT NULL DEFAULT 0, -- attempt count at the last manual retry
    max_retries integer NOT NULL,
    timeout interval NOT NULL,
    run_at timestamptz NOT NULL DEFAULT now(),
    next_retry_at timestamptz,
    progress smallint,
    progress_message text,
    result jsonb,
    last_error text,
    checkpoint jsonb,                    -- handler state that survives a retry
    cancel_requested boolean NOT NULL DEFAULT false,
    created_by text,                     -- user name; NULL when a trusted service submitted it
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_params_object_check CHECK (jsonb_typeof(params) = 'object'),
    CONSTRAINT job_priority_check CHECK (priority BETWEEN -1000 AND 1000),
    CONSTRAINT job_progress_check CHECK (progress IS NULL OR progress BETWEEN 0 AND 100),
    CONSTRAINT job_attempt_check CHECK (attempt >= 0),
    CONSTRAINT job_terminal_finished_check CHECK (
        (status IN ('completed', 'dead', 'canceled')) = (finished_at IS NOT NULL)
    ),
    CONSTRAINT job_retrying_check CHECK ((status = 'retrying') = (next_retry_at IS NOT NULL))
);

-- Dedup: at most one active job per hash, enforced by the index itself (INSERT ... ON CONFLICT).
CREATE UNIQUE INDEX job_active_hash_key ON jobqueue.job (job_hash)
    WHERE status IN ('waiting', 'queued', 'running', 'retrying');
-- The dedup window: completed jobs by hash, newest first.
CREATE INDEX job_completed_hash_idx ON jobqueue.job (job_hash, finished_at DESC)
    WHERE status = 'completed';
-- list_jobs: newest first within an organization, optionally by status or type.
CREATE INDEX job_org_id_idx ON jobqueue.job (organization_id, id DESC);
CREATE INDEX job_org_status_id_idx ON jobqueue.job (organization_id, status, id DESC);
CREATE INDEX job_org_type_id_idx ON jobqueue.job (organization_id, job_type, id DESC);
-- metrics and the rescue of lost attempts look at the live jobs only.
CREATE INDEX job_active_idx ON jobqueue.job (organization_id, status, priority)
    WHERE status IN ('waiting', 'queued', 'running', 'retrying');
-- cleanup: terminal jobs by age; metrics: an organization's recently finished jobs.
CREATE INDEX job_finished_at_idx ON jobqueue.job (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX job_org_finished_idx ON jobqueue.job (organization_id, finished_at, status)
    WHERE finished_at IS NOT NULL;

CREATE TABLE jobqueue.job_dependency (
    job_id bigint NOT NULL REFERENCES jobqueue.job (id) ON DELETE CASCADE,
    depends_on_id bigint NOT NULL REFERENCES jobqueue.job (id) ON DELETE CASCADE,
    CONSTRAINT job_dependency_pkey PRIMARY KEY (job_id, depends_on_id),
    CONSTRAINT job_dependency_self_check CHECK (job_id <> depends_on_id)
);
CREATE INDEX job_dependency_depends_on_idx ON jobqueue.job_dependency (depends_on_id);

CREATE TABLE jobqueue.attempt (
    job_id bigint NOT NULL REFERENCES jobqueue.job (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    organization_id bigint NOT NULL REFERENCES jobqueue.organization (id),
    job_type text NOT NULL,
    worker_id bigint,                    -- procrastinate_workers.id of the worker that ran it
    worker_name text,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome jobqueue.attempt_outcome,    -- NULL while it runs
    error text,
    traceback text,
    late_outcome jsonb,                  -- what a fenced-off worker reported after the attempt was closed
    procrastinate_job_id bigint,         -- the vehicle that carried this attempt (soft reference)
    CONSTRAINT attempt_pkey PRIMARY KEY (job_id, attempt),
    CONSTRAINT attempt_finished_check CHECK ((outcome IS NULL) = (finished_at IS NULL))
);
-- Running attempts per worker: the rescue of lost attempts.
CREATE INDEX attempt_running_idx ON jobqueue.attempt (worker_id) WHERE outcome IS NULL;
-- Metrics: finished attempts of an organization by time.
CREATE INDEX attempt_org_finished_idx ON jobqueue.attempt (organization_id, finished_at)
    WHERE finished_at IS NOT NULL;

-- Rate limits: one counter row per (type, organization, fixed window); the upsert serialises
-- concurrent submitters on the row, and a refused submit rolls its increment back.
CREATE TABLE jobqueue.rate_counter (
    job_type text NOT NULL REFERENCES jobqueue.job_type (name) ON DELETE CASCADE ON UPDATE CASCADE,
    organization_id bigint NOT NULL REFERENCES jobqueue.organization (id) ON DELETE CASCADE,
    window_start timestamptz NOT NULL,
    count integer NOT NULL,
    CONSTRAINT rate_counter_pkey PRIMARY KEY (job_type, organization_id, window_start)
);

-- What every job-returning API function answers with: the job as callers see it.
CREATE TYPE jobqueue.job_info AS (
    id bigint,
    job_type text,
    organization text,
    queue text,
    status jobqueue.job_status,
    priority integer,
    params jsonb,
    attempt integer,
    max_retries integer,
    timeout interval,
    run_at timestamptz,
    next_retry_at timestamptz,
    progress smallint,
    progress_message text,
    result jsonb,
    last_error text,
    cancel_requested boolean,
    created_by text,
    created_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz,
    depends_on bigint[],
    duplicate boolean
);

-- One element of a submit_jobs call as it moves through validation, dedup and insert.
CREATE TYPE jobqueue.submission AS (
    ord bigint,
    job_type text,
    organization_id bigint,
    queue text,
    priority integer,
    params jsonb,
    run_at timestamptz,
    depends_on bigint[],
    job_hash bytea,
    max_retries integer,
    timeout interval,
    dedup_window interval,
    status jobqueue.job_status,
    job_id bigint,
    duplicate boolean
);

-- ---------------------------------------------------------------- events

CREATE TABLE jobqueue.event (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id bigint NOT NULL,
    job_id bigint,
    type text NOT NULL,
    data jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_org_id_idx ON jobqueue.event (organization_id, id);
CREATE INDEX event_job_id_idx ON jobqueue.event (job_id, id);
CREATE INDEX event_created_at_idx ON jobqueue.event (created_at);

-- ---------------------------------------------------------------- roles

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'jobqueue_client') THEN
        CREATE ROLE jobqueue_client NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'jobqueue_worker') THEN
        CREATE ROLE jobqueue_worker NOLOGIN;
    END IF;
END
$$;

-- Clients reach the engine through its functions only; the tables stay private.
REVOKE ALL ON ALL TABLES IN SCHEMA jobqueue FROM PUBLIC;
GRANT USAGE ON SCHEMA jobqueue TO jobqueue_client, jobqueue_worker;
