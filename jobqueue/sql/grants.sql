-- grants.sql: who may call what. Applied last, after every function exists.
--
-- jobqueue_client: submits and reads: jobs (submit, get, list, cancel, retry, attempts),
--                  events, metrics, organizations and job types as the actor sees them,
--                  authentication, browser sessions and listing tokens. With actor NULL it is a
--                  trusted service over every organization: the actor is asserted by the
--                  caller, never proven.
-- jobqueue_admin:  manages users, organizations, memberships, tokens and job types, and the
--                  queues' pauses and caps (the functions in v_admin_side); nothing else. An operator's login usually holds
--                  both roles.
-- jobqueue_worker: the client's functions plus the worker side, and procrastinate's own tables
--                  and functions, which its workers use directly. A worker is trusted with the
--                  jobs it can claim (it reads their params and reports any attempt's outcome).
-- Internal helpers (names starting with "_") are granted to nobody; the tables to nobody but
-- their owner. Every function pins its search_path, pg_temp last (test_privileges.py).

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobqueue FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA jobqueue FROM PUBLIC;

DO $$
DECLARE
    v_fn regprocedure;
    v_name name;
    v_worker_side constant text[] := ARRAY[
        'fetch_vehicles', 'finish_attempts', 'finish_and_fetch', 'complete_attempt',
        'fail_attempt', 'report_progress', 'save_checkpoint', 'job_checkpoint', 'hold_attempts',
        'rescue_attempts', 'cleanup_batch', 'claim_due_schedules', 'fire_schedule',
        'describe_worker'];
    v_admin_side constant text[] := ARRAY[
        'create_organization', 'create_user', 'add_member', 'remove_member', 'create_token',
        'revoke_token', 'register_job_type', 'set_job_type_enabled', 'pause_queue',
        'resume_queue', 'set_queue_limits', 'set_organization_limits', 'set_job_type_limits'];
BEGIN
    -- Match on proname: regprocedure's text drops the schema when it is on the search_path.
    -- Each function's grants are set whole, so a function that changes class loses the old.
    FOR v_fn, v_name IN
        SELECT p.oid::regprocedure, p.proname FROM pg_proc AS p
        JOIN pg_namespace AS n ON n.oid = p.pronamespace
        WHERE n.nspname = 'jobqueue' AND p.proname !~ '^_' AND p.prokind = 'f'
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM jobqueue_client, jobqueue_worker,'
                       ' jobqueue_admin', v_fn);
        IF v_name = ANY (v_admin_side) THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO jobqueue_admin', v_fn);
        ELSIF v_name = ANY (v_worker_side) THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO jobqueue_worker', v_fn);
        ELSE
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO jobqueue_client, jobqueue_worker',
                           v_fn);
        END IF;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA procrastinate TO jobqueue_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA procrastinate TO jobqueue_worker;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA procrastinate TO jobqueue_worker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA procrastinate TO jobqueue_worker;
