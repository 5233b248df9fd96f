-- Execution modes and held attempts: where a job type's handlers run, and attempts whose
-- handler outlives their end.
--
-- job_type.execution: 'inline' (in the worker process: a thread for sync handlers, the event
-- loop for async ones) or 'process' (a child process the worker can kill at the deadline or
-- on cancel); NULL leaves the choice to the worker's --execution.
-- attempt.held_at: a handler that cannot be stopped (inline mode) and still runs after its
-- deadline or a cancel keeps its attempt open, and its worker reports it here while it runs;
-- the rescuer leaves such an attempt alone until the reports stop, so no second attempt of
-- the job can start while the first one's handler still runs.

ALTER TABLE jobqueue.job_type ADD COLUMN execution text;
ALTER TABLE jobqueue.job_type ADD CONSTRAINT job_type_execution_check
    CHECK (execution IN ('inline', 'process'));

ALTER TABLE jobqueue.attempt ADD COLUMN held_at timestamptz;
