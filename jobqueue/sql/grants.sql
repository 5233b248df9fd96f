-- grants.sql: who may call what. Applied last, after every function exists.
--
-- jobqueue_client: the public API (submit, read, cancel, retry, access management, metrics).
-- jobqueue_worker: the client's rights plus the worker side, and procrastinate's own tables and
--                  functions, which its workers use directly.
-- Internal helpers (names starting with "_") are granted to nobody; the tables to nobody but
-- their owner. Every public function is SECURITY DEFINER with a pinned search_path.

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobqueue FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA jobqueue FROM PUBLIC;

DO $$
DECLARE
    v_fn regprocedure;
    v_name name;
    v_worker_side constant text[] := ARRAY[
        'fetch_vehicles', 'finish_attempts', 'finish_and_fetch', 'complete_attempt',
        'fail_attempt',
        'report_progress', 'save_checkpoint', 'job_checkpoint', 'hold_attempts',
        'rescue_attempts', 'cleanup_batch'];
BEGIN
    -- Match on proname: regprocedure's text drops the schema when it is on the search_path.
    FOR v_fn, v_name IN
        SELECT p.oid::regprocedure, p.proname FROM pg_proc AS p
        JOIN pg_namespace AS n ON n.oid = p.pronamespace
        WHERE n.nspname = 'jobqueue' AND p.proname !~ '^_' AND p.prokind = 'f'
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO jobqueue_worker', v_fn);
        IF v_name = ANY (v_worker_side) THEN
            EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM jobqueue_client', v_fn);
        ELSE
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO jobqueue_client', v_fn);
        END IF;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA procrastinate TO jobqueue_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA procrastinate TO jobqueue_worker;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA procrastinate TO jobqueue_worker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA procrastinate TO jobqueue_worker;
