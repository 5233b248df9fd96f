-- worker_info: what a worker process is, for the dashboard's workers page.
--
-- procrastinate_workers holds an id and a heartbeat. A jobqueue worker describes itself once
-- when it starts (host, pid, queues, concurrency): one row per worker process, nothing per
-- job. The row goes with its worker (procrastinate unregisters a stopped worker and prunes a
-- silent one).

CREATE TABLE jobqueue.worker_info (
    worker_id bigint PRIMARY KEY
        REFERENCES procrastinate.procrastinate_workers (id) ON DELETE CASCADE,
    host text NOT NULL,
    pid integer NOT NULL,
    queues text[],                       -- NULL: every queue
    concurrency integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT worker_info_host_check CHECK (length(host) BETWEEN 1 AND 255),
    CONSTRAINT worker_info_concurrency_check CHECK (concurrency > 0)
);
