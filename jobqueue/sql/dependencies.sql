-- dependencies.sql: jobs that wait for other jobs.
--
-- Owns:      releasing and cascading dependents; called by the lifecycle trigger in the same
--            transaction (and statement) that ends the job they depend on.
-- Internal:  _release_dependents(ids)  -- waiting -> queued once every dependency completed
--            _cancel_dependents(ids)   -- waiting -> canceled when a dependency ended dead or
--                                         canceled; cascades through the lifecycle trigger
-- States:    reads completed/dead/canceled; writes waiting -> queued | canceled.
-- Locks:     the dependents' row locks (FOR UPDATE), in id order so concurrent releases agree;
--            a release decides in a statement after the lock (see _release_dependents).
-- Raises:    nothing of its own.
-- Events:    'released' and 'canceled', written by the lifecycle trigger.

CREATE OR REPLACE FUNCTION jobqueue._release_dependents(p_job_ids bigint[]) RETURNS void
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_dependents bigint[];
    v_candidates bigint[];
BEGIN
    -- Most finished jobs have no dependents: one index probe per batch, and done. The
    -- dependents are then found by primary key; "status = 'waiting'" alone would have the
    -- planner walk every live job.
    v_dependents := ARRAY(SELECT d.job_id FROM jobqueue.job_dependency AS d
                          WHERE d.depends_on_id = ANY (p_job_ids));
    IF cardinality(v_dependents) = 0 THEN
        RETURN;
    END IF;
    -- Lock first, decide in the next statement. Two transactions completing a job's last two
    -- dependencies at once both lock the dependent; the second one waits for the first to
    -- commit, and only a statement that starts after that wait has a snapshot in which the
    -- other dependency is completed. Deciding in the locking statement itself would judge by
    -- the snapshot taken before the wait, and the dependent would never be released.
    SELECT array_agg(c.id) INTO v_candidates
    FROM (
        SELECT j.id
        FROM jobqueue.job AS j
        WHERE j.id = ANY (v_dependents) AND j.status = 'waiting'
        ORDER BY j.id
        FOR UPDATE
    ) AS c;
    IF v_candidates IS NULL THEN
        RETURN;
    END IF;
    UPDATE jobqueue.job AS j
    SET status = 'queued', updated_at = now()
    WHERE j.id = ANY (v_candidates)
      AND j.status = 'waiting'
      AND NOT EXISTS (
          SELECT FROM jobqueue.job_dependency AS d
          JOIN jobqueue.job AS dep ON dep.id = d.depends_on_id
          WHERE d.job_id = j.id AND dep.status <> 'completed'
      );
END
$$;

CREATE OR REPLACE FUNCTION jobqueue._cancel_dependents(p_job_ids bigint[]) RETURNS void
LANGUAGE sql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    WITH candidates AS (
        SELECT j.id,
               (SELECT min(d.depends_on_id) FROM jobqueue.job_dependency AS d
                WHERE d.job_id = j.id AND d.depends_on_id = ANY (p_job_ids)) AS cause
        FROM jobqueue.job AS j
        -- by primary key, as in _release_dependents
        WHERE j.id = ANY (ARRAY(SELECT d.job_id FROM jobqueue.job_dependency AS d
                                WHERE d.depends_on_id = ANY (p_job_ids)))
          AND j.status = 'waiting'
        ORDER BY j.id
        FOR UPDATE
    )
    UPDATE jobqueue.job AS j
    SET status = 'canceled', finished_at = now(), updated_at = now(),
        last_error = format('dependency %s ended %s', c.cause,
                            (SELECT dep.status FROM jobqueue.job AS dep WHERE dep.id = c.cause))
    FROM candidates AS c
    WHERE j.id = c.id
$$;
