-- 0007: capacity per organization. The claim shares a queue among the organizations that
-- have runnable jobs in it (round robin, weighted), honours pauses and caps on running jobs
-- (per queue, per organization in a queue, per job type) and limits starts per type and
-- organization (claim.sql); the controls are in capacity.sql.

-- Runnable jobs of a queue by organization, each organization's in claim order (priority,
-- then age). The claim reads it only when more than one organization has runnable jobs in
-- the queues it serves, or a pause or cap applies: it finds the organizations with one index
-- probe each and walks each one's jobs from the head. A job enters it when submitted (or
-- released, or retried) and leaves it when it starts, which writes no entry here: the row's
-- new version is outside the predicate.
-- "organization_id > 0" holds for every job (identities start at 1): only a query that
-- repeats it may use the index. Without it, a lookup of runnable jobs by id (the claim's
-- start of its jobs) matched the predicate, and a plan made before the table was analyzed
-- walked this whole index to find ten ids.
CREATE INDEX job_runnable_idx ON jobqueue.job (queue, organization_id, priority DESC, id)
    WHERE status IN ('queued', 'retrying') AND organization_id > 0;

-- A queue's controls. A row exists only for a queue that has been paused or capped.
CREATE TABLE jobqueue.queue_policy (
    queue text NOT NULL,
    paused boolean NOT NULL DEFAULT false,      -- no job of the queue starts; running ones finish
    concurrency integer,                        -- running jobs of the queue, all organizations
    organization_concurrency integer,           -- running jobs of each organization in the queue
    running integer NOT NULL DEFAULT 0,         -- kept while concurrency is set (claim.sql)
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT queue_policy_pkey PRIMARY KEY (queue),
    CONSTRAINT queue_policy_queue_check CHECK (queue ~ '^[A-Za-z0-9_.-]{1,40}$'),
    CONSTRAINT queue_policy_concurrency_check CHECK (concurrency BETWEEN 0 AND 1000000),
    CONSTRAINT queue_policy_organization_concurrency_check
        CHECK (organization_concurrency BETWEEN 0 AND 1000000)
);

-- One organization's controls in one queue: a pause of its own, a cap that overrides the
-- queue's organization_concurrency, and its weight in the round robin.
CREATE TABLE jobqueue.organization_policy (
    queue text NOT NULL,
    organization_id bigint NOT NULL REFERENCES jobqueue.organization (id) ON DELETE CASCADE,
    paused boolean NOT NULL DEFAULT false,
    concurrency integer,
    weight integer NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT organization_policy_pkey PRIMARY KEY (queue, organization_id),
    CONSTRAINT organization_policy_queue_check CHECK (queue ~ '^[A-Za-z0-9_.-]{1,40}$'),
    CONSTRAINT organization_policy_concurrency_check CHECK (concurrency BETWEEN 0 AND 1000000),
    CONSTRAINT organization_policy_weight_check CHECK (weight BETWEEN 1 AND 1000)
);

-- A job type's caps: running jobs of the type (all organizations), and starts per
-- organization in fixed windows of start_period (an execution rate limit, where the type's
-- rate_limit counts submits).
CREATE TABLE jobqueue.job_type_policy (
    job_type text NOT NULL
        REFERENCES jobqueue.job_type (name) ON DELETE CASCADE ON UPDATE CASCADE,
    concurrency integer,
    start_limit integer,
    start_period interval,
    running integer NOT NULL DEFAULT 0,         -- kept while concurrency is set
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_type_policy_pkey PRIMARY KEY (job_type),
    CONSTRAINT job_type_policy_concurrency_check CHECK (concurrency BETWEEN 0 AND 1000000),
    CONSTRAINT job_type_policy_start_limit_check CHECK (
        (start_limit IS NULL AND start_period IS NULL)
        OR (start_limit IS NOT NULL AND start_period IS NOT NULL
            AND start_limit BETWEEN 1 AND 1000000
            AND start_period > interval '0' AND start_period <= interval '1 day')
    )
);

-- An organization's state in a queue: its running jobs (kept while a cap applies to it) and
-- the service it has had while other organizations competed (the round robin's memory, in
-- jobs divided by weight). Updated in place, never indexed beyond its key: a HOT update.
CREATE TABLE jobqueue.queue_usage (
    queue text NOT NULL,
    organization_id bigint NOT NULL REFERENCES jobqueue.organization (id) ON DELETE CASCADE,
    running integer NOT NULL DEFAULT 0,
    served double precision NOT NULL DEFAULT 0,
    CONSTRAINT queue_usage_pkey PRIMARY KEY (queue, organization_id)
) WITH (fillfactor = 50);

-- Starts per (type, organization, fixed window), for job_type_policy.start_limit.
CREATE TABLE jobqueue.start_counter (
    job_type text NOT NULL REFERENCES jobqueue.job_type (name) ON DELETE CASCADE ON UPDATE CASCADE,
    organization_id bigint NOT NULL REFERENCES jobqueue.organization (id) ON DELETE CASCADE,
    window_start timestamptz NOT NULL,
    count integer NOT NULL,
    CONSTRAINT start_counter_pkey PRIMARY KEY (job_type, organization_id, window_start)
);

-- What the controls of capacity.sql answer with.
CREATE TYPE jobqueue.queue_settings AS (
    queue text,
    paused boolean,
    concurrency integer,
    organization_concurrency integer
);
CREATE TYPE jobqueue.organization_settings AS (
    queue text,
    organization text,
    paused boolean,
    concurrency integer,
    weight integer
);
CREATE TYPE jobqueue.job_type_settings AS (
    job_type text,
    concurrency integer,
    start_limit integer,
    start_period interval
);
-- One organization in one queue as list_queue_usage shows it.
CREATE TYPE jobqueue.organization_usage AS (
    queue text,
    organization text,
    paused boolean,        -- the organization's own pause
    queue_paused boolean,  -- the queue's pause, for everyone
    concurrency integer,   -- its cap: its own, else the queue's organization_concurrency
    weight integer,
    running bigint,
    queued bigint          -- queued or retrying
);

REVOKE ALL ON jobqueue.queue_policy, jobqueue.organization_policy, jobqueue.job_type_policy,
    jobqueue.queue_usage, jobqueue.start_counter FROM PUBLIC;
