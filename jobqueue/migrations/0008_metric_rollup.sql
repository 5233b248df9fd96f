-- metric_rollup: the monotonic totals of /metrics survive the retention cleanup, with no write per job.
--
-- The Prometheus counters (jobs submitted; attempts completed, failed and retried; the
-- histogram of completed attempts' durations) are what the job and attempt tables hold now
-- plus what the cleanup has deleted. The cleanup adds the rows it deletes to this table in
-- the statement that deletes them, so a scrape, one statement, never sees a row twice or
-- not at all, and a counter never goes down. Nothing on the hot path (submit, claim, finish)
-- writes here. duration_buckets counts completed attempts per bucket of
-- jobqueue._duration_bounds() (metrics.sql), the last one past the largest bound.

CREATE TABLE jobqueue.metric_rollup (
    organization_id bigint NOT NULL,
    job_type text NOT NULL,
    queue text NOT NULL,
    submitted bigint NOT NULL DEFAULT 0,
    completed bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    retried bigint NOT NULL DEFAULT 0,
    duration_sum numeric NOT NULL DEFAULT 0,  -- seconds, exact: a float sum could go down by an ulp
    duration_buckets bigint[] NOT NULL,
    CONSTRAINT metric_rollup_pkey PRIMARY KEY (organization_id, job_type, queue)
);
