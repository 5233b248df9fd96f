-- least_privilege: a role for user, token, membership and job-type management apart
-- from the client's; tokens that expire, and browser sessions that are tokens of their own;
-- procrastinate's trigger functions resolve names in its schema only.

-- jobqueue_client submits and reads; jobqueue_admin manages users, tokens, memberships and
-- job types (grants.sql says which function belongs to which).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'jobqueue_admin') THEN
        CREATE ROLE jobqueue_admin NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA jobqueue TO jobqueue_admin;

-- A token may expire (NULL: never). A browser session is a token of its own, issued at
-- sign-in for the token that signed in (session_of), revoked at sign-out, and refused once
-- that token is revoked or expired.
ALTER TABLE jobqueue.api_token
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN session_of bigint REFERENCES jobqueue.api_token (id) ON DELETE CASCADE;

-- procrastinate's trigger functions name their tables and types unqualified and set no
-- search_path, so they resolve names through the caller's: inside a SECURITY DEFINER
-- function of jobqueue that is a pinned path, but a trigger function should not depend on
-- who fires it. Pinned to procrastinate's own schema, with the temporary schema last.
ALTER FUNCTION procrastinate.procrastinate_notify_queue_job_inserted_v1()
    SET search_path = procrastinate, pg_catalog, pg_temp;
ALTER FUNCTION procrastinate.procrastinate_notify_queue_abort_job_v1()
    SET search_path = procrastinate, pg_catalog, pg_temp;
ALTER FUNCTION procrastinate.procrastinate_trigger_function_status_events_insert_v1()
    SET search_path = procrastinate, pg_catalog, pg_temp;
ALTER FUNCTION procrastinate.procrastinate_trigger_function_status_events_update_v1()
    SET search_path = procrastinate, pg_catalog, pg_temp;
ALTER FUNCTION procrastinate.procrastinate_trigger_function_scheduled_events_v1()
    SET search_path = procrastinate, pg_catalog, pg_temp;
ALTER FUNCTION procrastinate.procrastinate_trigger_abort_requested_events_procedure_v1()
    SET search_path = procrastinate, pg_catalog, pg_temp;
ALTER FUNCTION procrastinate.procrastinate_unlink_periodic_defers_v1()
    SET search_path = procrastinate, pg_catalog, pg_temp;
