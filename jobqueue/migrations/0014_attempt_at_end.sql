-- 0014_attempt_at_end: an attempt row is written once, when the attempt ends.
--
-- An attempt used to be inserted by the claim (open: no outcome) and updated by its end: two
-- row versions, and two rounds of index entries (attempt_pkey, attempt_running_idx, then
-- attempt_pkey and attempt_org_finished_idx again, the outcome being indexed by a predicate).
-- The claim already updates the job row, so the running attempt's facts now ride there:
-- worker, vehicle, start and the last hold report. The attempt row is inserted by whatever
-- closes the attempt (finish_attempts, complete/fail_attempt, rescue_attempts) with its
-- outcome, from those facts, which the same statement clears from the job. A running attempt
-- is read from its job (job_attempts, list_workers, metric_totals, rescue_attempts).
--
-- Invariant: a job carries attempt_started_at exactly while it is running (kept by the
-- engine's functions; a check constraint would answer a hand-typed illegal status change
-- before the lifecycle trigger's JQT01 does), and the attempt table holds ended attempts only.

ALTER TABLE jobqueue.job
    ADD COLUMN attempt_worker_id bigint,          -- procrastinate_workers.id running the attempt
    ADD COLUMN attempt_vehicle_id bigint,         -- the procrastinate job carrying it (soft reference)
    ADD COLUMN attempt_started_at timestamptz,    -- the running attempt's start; NULL unless running
    ADD COLUMN attempt_held_at timestamptz;       -- its handler's last report past the attempt's end

-- The open attempts of running jobs move onto their jobs.
UPDATE jobqueue.job AS j
SET attempt_worker_id = a.worker_id, attempt_vehicle_id = a.procrastinate_job_id,
    attempt_started_at = a.started_at, attempt_held_at = a.held_at
FROM jobqueue.attempt AS a
WHERE a.job_id = j.id AND a.attempt = j.attempt AND a.outcome IS NULL AND j.status = 'running';
DELETE FROM jobqueue.attempt AS a
USING jobqueue.job AS j
WHERE a.job_id = j.id AND a.attempt = j.attempt AND a.outcome IS NULL AND j.status = 'running';
-- An open attempt no running job names (none should exist: nothing could ever close it) is
-- closed as lost, so that the table holds ended attempts only.
UPDATE jobqueue.attempt
SET outcome = 'lost', finished_at = now(),
    error = coalesce(error, 'closed by migration 0014: its job was not running it')
WHERE outcome IS NULL;
-- A running job without an open attempt (none should exist either) gets its last change as
-- its attempt's start, so the rescuer can close it as it would any other.
UPDATE jobqueue.job
SET attempt_started_at = updated_at
WHERE status = 'running' AND attempt_started_at IS NULL;

-- Every row is an ended attempt.
ALTER TABLE jobqueue.attempt
    DROP CONSTRAINT attempt_finished_check,
    ALTER COLUMN outcome SET NOT NULL,
    ALTER COLUMN finished_at SET NOT NULL,
    -- never updated in place any more (but for a rare late outcome): full pages
    RESET (fillfactor);

-- Open attempts per worker: the rescue now reads running jobs (job_org_status_id_idx).
DROP INDEX jobqueue.attempt_running_idx;
