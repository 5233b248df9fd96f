-- capacity.sql: the operator's controls over how organizations share the workers.
--
-- Owns:      pauses, caps, weights and start limits (the *_policy tables), a queued job's
--            priority, and what each organization uses of each queue.
-- Public:    pause_queue(queue, organization, actor)    -- no job of the queue (of that
--                                                        organization) starts; running ones finish
--            resume_queue(queue, organization, actor)
--            set_queue_limits(queue, concurrency, organization_concurrency, actor)
--                                                     -- running jobs of the queue, and of each
--                                                        organization in it (the default)
--            set_organization_limits(queue, organization, concurrency, weight, actor)
--                                                     -- one organization's cap and weight
--            set_job_type_limits(name, concurrency, start_limit, start_period, actor)
--                                                     -- running jobs of a type; starts per
--                                                        organization and period
--            set_job_priority(job_id, priority, actor)  -- a job that has not started yet
--            list_queues(actor)                       -- each queue: pause, caps, running, queued
--            list_queue_usage(actor, queue, organization)  -- each organization in each queue
--            list_job_type_limits(actor)              -- each type's caps
-- Access:    an organization's own pause: an admin of it (or a global admin); every other
--            setting: a global admin or a service; the priority of a job: whoever may cancel
--            it. Readers show running and queued counts of the organizations the actor may
--            see only; the settings themselves are global, like job types.
-- Semantics: a setter replaces the settings it names (NULL: no cap). When a pause or cap
--            setter returns, every claim that could have read the previous settings has
--            ended: it takes queue_policy in EXCLUSIVE mode, which claims and the running
--            counts take in ROW SHARE mode (claim.sql), and a cap setter recounts the running
--            jobs before it commits. A resume or a raised cap wakes the queue's workers.
-- Locks:     queue_policy EXCLUSIVE (pause, resume, caps; a few milliseconds while claims and
--            finishes in flight end); the job's row (set_job_priority), then its waiting
--            vehicle with SKIP LOCKED (a claim holding it is starting the job).
-- Raises:    JQA02 forbidden, JQN01 job not visible, JQN02 organization not found, JQN05 no
--            such queue, JQV01 unknown job type, JQV03 bad argument (priority out of range),
--            JQV10 a cap, weight or start limit out of range, JQC02 the job has started.
-- Events:    queue_paused, queue_resumed, limits_changed (job_id NULL) in the organization's
--            feed, or in every organization's for a global setting; priority_changed on a job.

-- The queue's name when the engine knows it (a job type, a setting or a waiting job names
-- it), else JQN05: a typo must not pause nothing in silence.
CREATE OR REPLACE FUNCTION jobqueue._require_queue(p_queue text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
BEGIN
    IF p_queue IS NULL OR NOT (
        EXISTS (SELECT FROM jobqueue.job_type AS t WHERE t.queue = p_queue)
        OR EXISTS (SELECT FROM jobqueue.queue_policy AS p WHERE p.queue = p_queue)
        OR EXISTS (SELECT FROM jobqueue.organization_policy AS p WHERE p.queue = p_queue)
        OR EXISTS (SELECT FROM jobqueue.job AS j
                   WHERE j.queue = p_queue AND j.status IN ('queued', 'retrying')
                     AND j.organization_id > 0)
    ) THEN
        RAISE EXCEPTION 'no queue named %', coalesce('"' || left(p_queue, 50) || '"', '(null)')
            USING ERRCODE = 'JQN05';
    END IF;
    RETURN p_queue;
END
$$;

-- An organization whose own settings the actor may change: a global admin, a service, or an
-- admin member of it.
CREATE OR REPLACE FUNCTION jobqueue._require_organization_admin(
    p_actor text, p_organization text, p_what text
) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
DECLARE
    v_org_id bigint := jobqueue._require_organization(p_actor, p_organization);
BEGIN
    IF NOT jobqueue._is_admin(p_actor) AND NOT EXISTS (
        SELECT FROM jobqueue.member AS m JOIN jobqueue.app_user AS u ON u.id = m.user_id
        WHERE u.name = p_actor AND m.organization_id = v_org_id AND m.active AND m.role = 'admin'
    ) THEN
        RAISE EXCEPTION 'only an admin of "%" may %', p_organization, p_what
            USING ERRCODE = 'JQA02';
    END IF;
    RETURN v_org_id;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue._check_limit(p_name text, p_value integer, p_low integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_value NOT BETWEEN p_low AND 1000000 THEN
        RAISE EXCEPTION '% must be between % and 1000000, got %', p_name, p_low, p_value
            USING ERRCODE = 'JQV10';
    END IF;
END
$$;

-- One event per organization named, or per organization when none is (a global setting).
CREATE OR REPLACE FUNCTION jobqueue._capacity_event(
    p_organization_id bigint, p_type text, p_data jsonb
) RETURNS void
LANGUAGE sql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT jobqueue._log_events(array_agg(o.id ORDER BY o.id),
                                array_fill(NULL::bigint, ARRAY[count(*)::integer]),
                                array_fill(p_type, ARRAY[count(*)::integer]),
                                array_fill(p_data, ARRAY[count(*)::integer]))
    FROM jobqueue.organization AS o
    WHERE p_organization_id IS NULL OR o.id = p_organization_id
    HAVING count(*) > 0
$$;

-- Workers serving the queue claim again now (procrastinate's job_inserted; its worker reads
-- only the type).
CREATE OR REPLACE FUNCTION jobqueue._wake_queue(p_queue text) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_notify('procrastinate_queue_v1#' || p_queue, '{"type": "job_inserted"}'),
           pg_notify('procrastinate_any_queue_v1', '{"type": "job_inserted"}')
$$;

CREATE OR REPLACE FUNCTION jobqueue._set_paused(
    p_queue text, p_organization text, p_paused boolean, p_actor text
) RETURNS TABLE (queue_name text, organization_name text, paused boolean)
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_queue text;
    v_org_id bigint;
    v_was boolean;
    v_what text := CASE WHEN p_paused THEN 'pause' ELSE 'resume' END;
BEGIN
    IF p_organization IS NULL THEN
        PERFORM jobqueue._require_admin(p_actor, v_what || ' a queue for every organization');
    ELSE
        v_org_id := jobqueue._require_organization_admin(p_actor, p_organization,
                                                          v_what || ' its queues');
    END IF;
    v_queue := jobqueue._require_queue(p_queue);
    LOCK TABLE jobqueue.queue_policy IN EXCLUSIVE MODE;
    IF v_org_id IS NULL THEN
        SELECT p.paused INTO v_was FROM jobqueue.queue_policy AS p WHERE p.queue = v_queue;
        INSERT INTO jobqueue.queue_policy AS p (queue, paused) VALUES (v_queue, p_paused)
        ON CONFLICT ON CONSTRAINT queue_policy_pkey
            DO UPDATE SET paused = excluded.paused, updated_at = now();
    ELSE
        SELECT p.paused INTO v_was FROM jobqueue.organization_policy AS p
        WHERE p.queue = v_queue AND p.organization_id = v_org_id;
        INSERT INTO jobqueue.organization_policy AS p (queue, organization_id, paused)
        VALUES (v_queue, v_org_id, p_paused)
        ON CONFLICT ON CONSTRAINT organization_policy_pkey
            DO UPDATE SET paused = excluded.paused, updated_at = now();
    END IF;
    IF coalesce(v_was, false) IS DISTINCT FROM p_paused THEN
        PERFORM jobqueue._capacity_event(
            v_org_id, CASE WHEN p_paused THEN 'queue_paused' ELSE 'queue_resumed' END,
            jsonb_build_object('queue', v_queue, 'organization', p_organization,
                               'by', p_actor));
    END IF;
    IF NOT p_paused THEN
        PERFORM jobqueue._wake_queue(v_queue);
    END IF;
    RETURN QUERY SELECT v_queue, p_organization, p_paused;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.pause_queue(
    queue text, organization text DEFAULT NULL, actor text DEFAULT NULL
) RETURNS TABLE (queue_name text, organization_name text, paused boolean)
LANGUAGE sql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT * FROM jobqueue._set_paused(pause_queue.queue, pause_queue.organization, true,
                                       pause_queue.actor)
$$;

CREATE OR REPLACE FUNCTION jobqueue.resume_queue(
    queue text, organization text DEFAULT NULL, actor text DEFAULT NULL
) RETURNS TABLE (queue_name text, organization_name text, paused boolean)
LANGUAGE sql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT * FROM jobqueue._set_paused(resume_queue.queue, resume_queue.organization, false,
                                       resume_queue.actor)
$$;

CREATE OR REPLACE FUNCTION jobqueue.set_queue_limits(
    queue text,
    concurrency integer DEFAULT NULL,
    organization_concurrency integer DEFAULT NULL,
    actor text DEFAULT NULL
) RETURNS jobqueue.queue_settings
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_queue text;
BEGIN
    PERFORM jobqueue._require_admin(actor, 'set the limits of a queue');
    PERFORM jobqueue._check_limit('concurrency', set_queue_limits.concurrency, 0);
    PERFORM jobqueue._check_limit('organization_concurrency',
                                  set_queue_limits.organization_concurrency, 0);
    v_queue := jobqueue._require_queue(set_queue_limits.queue);
    LOCK TABLE jobqueue.queue_policy IN EXCLUSIVE MODE;
    INSERT INTO jobqueue.queue_policy AS p (queue, concurrency, organization_concurrency)
    VALUES (v_queue, set_queue_limits.concurrency, set_queue_limits.organization_concurrency)
    ON CONFLICT ON CONSTRAINT queue_policy_pkey DO UPDATE
        SET concurrency = excluded.concurrency,
            organization_concurrency = excluded.organization_concurrency, updated_at = now();
    PERFORM jobqueue._recount_running();
    PERFORM jobqueue._capacity_event(NULL, 'limits_changed', jsonb_build_object(
        'queue', v_queue, 'concurrency', set_queue_limits.concurrency,
        'organization_concurrency', set_queue_limits.organization_concurrency,
        'by', actor));
    PERFORM jobqueue._wake_queue(v_queue);
    RETURN (SELECT ROW(p.queue, p.paused, p.concurrency, p.organization_concurrency)
                       ::jobqueue.queue_settings
            FROM jobqueue.queue_policy AS p WHERE p.queue = v_queue);
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.set_organization_limits(
    queue text,
    organization text,
    concurrency integer DEFAULT NULL,
    weight integer DEFAULT 1,
    actor text DEFAULT NULL
) RETURNS jobqueue.organization_settings
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_queue text;
    v_org_id bigint;
BEGIN
    PERFORM jobqueue._require_admin(actor, 'set the limits of an organization');
    v_org_id := jobqueue._require_organization(actor, set_organization_limits.organization);
    PERFORM jobqueue._check_limit('concurrency', set_organization_limits.concurrency, 0);
    IF set_organization_limits.weight IS NULL
       OR set_organization_limits.weight NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'weight must be between 1 and 1000, got %',
            quote_nullable(set_organization_limits.weight) USING ERRCODE = 'JQV10';
    END IF;
    v_queue := jobqueue._require_queue(set_organization_limits.queue);
    LOCK TABLE jobqueue.queue_policy IN EXCLUSIVE MODE;
    INSERT INTO jobqueue.organization_policy AS p (queue, organization_id, concurrency, weight)
    VALUES (v_queue, v_org_id, set_organization_limits.concurrency,
            set_organization_limits.weight)
    ON CONFLICT ON CONSTRAINT organization_policy_pkey DO UPDATE
        SET concurrency = excluded.concurrency, weight = excluded.weight, updated_at = now();
    PERFORM jobqueue._recount_running();
    PERFORM jobqueue._capacity_event(v_org_id, 'limits_changed', jsonb_build_object(
        'queue', v_queue, 'organization', set_organization_limits.organization,
        'concurrency', set_organization_limits.concurrency,
        'weight', set_organization_limits.weight, 'by', actor));
    PERFORM jobqueue._wake_queue(v_queue);
    RETURN (SELECT ROW(p.queue, set_organization_limits.organization, p.paused, p.concurrency,
                       p.weight)::jobqueue.organization_settings
            FROM jobqueue.organization_policy AS p
            WHERE p.queue = v_queue AND p.organization_id = v_org_id);
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.set_job_type_limits(
    name text,
    concurrency integer DEFAULT NULL,
    start_limit integer DEFAULT NULL,
    start_period interval DEFAULT NULL,
    actor text DEFAULT NULL
) RETURNS jobqueue.job_type_settings
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_queues text[];
BEGIN
    PERFORM jobqueue._require_admin(actor, 'set the limits of a job type');
    PERFORM jobqueue._check_limit('concurrency', set_job_type_limits.concurrency, 0);
    PERFORM jobqueue._check_limit('start_limit', set_job_type_limits.start_limit, 1);
    IF (set_job_type_limits.start_limit IS NULL) <> (set_job_type_limits.start_period IS NULL)
       OR set_job_type_limits.start_period <= interval '0'
       OR set_job_type_limits.start_period > interval '1 day' THEN
        RAISE EXCEPTION 'start_limit and start_period go together (a period above 0, at most a day)'
            USING ERRCODE = 'JQV10';
    END IF;
    IF NOT EXISTS (SELECT FROM jobqueue.job_type AS t WHERE t.name = set_job_type_limits.name) THEN
        RAISE EXCEPTION 'no job type named %',
            coalesce('"' || left(set_job_type_limits.name, 100) || '"', '(null)')
            USING ERRCODE = 'JQV01';
    END IF;
    LOCK TABLE jobqueue.queue_policy IN EXCLUSIVE MODE;
    IF set_job_type_limits.concurrency IS NULL AND set_job_type_limits.start_limit IS NULL THEN
        -- No policy left: claims go back to the FIFO walk when nothing else applies.
        DELETE FROM jobqueue.job_type_policy AS p WHERE p.job_type = set_job_type_limits.name;
    ELSE
        INSERT INTO jobqueue.job_type_policy AS p (job_type, concurrency, start_limit, start_period)
        VALUES (set_job_type_limits.name, set_job_type_limits.concurrency,
                set_job_type_limits.start_limit, set_job_type_limits.start_period)
        ON CONFLICT ON CONSTRAINT job_type_policy_pkey DO UPDATE
            SET concurrency = excluded.concurrency, start_limit = excluded.start_limit,
                start_period = excluded.start_period, updated_at = now();
    END IF;
    PERFORM jobqueue._recount_running();
    PERFORM jobqueue._capacity_event(NULL, 'limits_changed', jsonb_build_object(
        'job_type', set_job_type_limits.name, 'concurrency', set_job_type_limits.concurrency,
        'start_limit', set_job_type_limits.start_limit,
        'start_period', set_job_type_limits.start_period, 'by', actor));
    -- Its jobs may wait in any queue (a job can name its own).
    PERFORM jobqueue._wake_queue(q.queue)
    FROM (SELECT DISTINCT t.queue FROM jobqueue.job_type AS t
          WHERE t.name = set_job_type_limits.name) AS q;
    PERFORM pg_notify('procrastinate_any_queue_v1', '{"type": "job_inserted"}');
    RETURN ROW(set_job_type_limits.name, set_job_type_limits.concurrency,
               set_job_type_limits.start_limit, set_job_type_limits.start_period)
               ::jobqueue.job_type_settings;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.set_job_priority(
    job_id bigint, priority integer, actor text DEFAULT NULL
) RETURNS jobqueue.job_info
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_job jobqueue.job;
BEGIN
    v_job := jobqueue._lock_visible_job(set_job_priority.job_id, actor);
    IF set_job_priority.priority IS NULL OR set_job_priority.priority NOT BETWEEN -1000 AND 1000
    THEN
        RAISE EXCEPTION 'priority must be between -1000 and 1000, got %',
            quote_nullable(set_job_priority.priority) USING ERRCODE = 'JQV03';
    END IF;
    IF v_job.status NOT IN ('waiting', 'queued', 'retrying') THEN
        RAISE EXCEPTION 'job % is % and its priority can no longer change', v_job.id, v_job.status
            USING ERRCODE = 'JQC02',
                  DETAIL = format('{"job_id": %s, "status": "%s"}', v_job.id, v_job.status);
    END IF;
    IF v_job.priority <> set_job_priority.priority THEN
        UPDATE jobqueue.job SET priority = set_job_priority.priority, updated_at = now()
        WHERE id = v_job.id;
        -- Its waiting vehicle carries the priority the FIFO walk orders by. A claim holding it
        -- right now is starting the job: skipped, and nothing is left to reorder.
        UPDATE procrastinate.procrastinate_jobs SET priority = set_job_priority.priority
        WHERE id IN (SELECT v.id FROM procrastinate.procrastinate_jobs AS v
                     WHERE v.queueing_lock = 'jobqueue:' || v_job.id AND v.status = 'todo'
                     FOR UPDATE SKIP LOCKED);
        PERFORM jobqueue._log_events(
            ARRAY[v_job.organization_id], ARRAY[v_job.id], ARRAY['priority_changed'],
            ARRAY[jsonb_build_object('status', v_job.status, 'from', v_job.priority,
                                     'to', set_job_priority.priority, 'by', actor)]);
    END IF;
    RETURN jobqueue._job_infos(ARRAY[v_job.id]);
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.list_queues(actor text DEFAULT NULL)
RETURNS TABLE (queue text, paused boolean, concurrency integer,
               organization_concurrency integer, running bigint, queued bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_orgs bigint[] := coalesce(jobqueue._visible_organizations(actor),
                                ARRAY(SELECT id FROM jobqueue.organization));
BEGIN
    RETURN QUERY
        WITH live AS (
            -- One index range per organization and live status (job_org_status_id_idx).
            SELECT j.queue, count(*) FILTER (WHERE j.status = 'running') AS running,
                   count(*) FILTER (WHERE j.status IN ('queued', 'retrying')) AS queued
            FROM unnest(v_orgs) AS o (id)
            CROSS JOIN LATERAL (
                SELECT l.queue, l.status FROM jobqueue.job AS l
                WHERE l.organization_id = o.id AND l.status IN ('queued', 'running', 'retrying')
            ) AS j
            GROUP BY j.queue
        ), names AS (
            SELECT t.queue FROM jobqueue.job_type AS t
            UNION SELECT p.queue FROM jobqueue.queue_policy AS p
            UNION SELECT p.queue FROM jobqueue.organization_policy AS p
            WHERE p.organization_id = ANY (v_orgs)
            UNION SELECT l.queue FROM live AS l
        )
        SELECT n.queue, coalesce(p.paused, false), p.concurrency, p.organization_concurrency,
               coalesce(l.running, 0), coalesce(l.queued, 0)
        FROM names AS n
        LEFT JOIN jobqueue.queue_policy AS p ON p.queue = n.queue
        LEFT JOIN live AS l ON l.queue = n.queue
        ORDER BY n.queue;
END
$$;

-- Each organization the actor may see in each queue where it has live jobs or settings:
-- its pause (and the queue's), its cap (its own or the queue's default), its weight, and its
-- running and queued jobs.
CREATE OR REPLACE FUNCTION jobqueue.list_queue_usage(
    actor text DEFAULT NULL, queue text DEFAULT NULL, organization text DEFAULT NULL
) RETURNS SETOF jobqueue.organization_usage
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_orgs bigint[];
BEGIN
    IF list_queue_usage.organization IS NOT NULL THEN
        v_orgs := ARRAY[jobqueue._require_organization(actor, list_queue_usage.organization)];
    ELSE
        v_orgs := coalesce(jobqueue._visible_organizations(actor),
                           ARRAY(SELECT id FROM jobqueue.organization));
    END IF;
    RETURN QUERY
        WITH live AS (
            SELECT j.queue, j.organization_id,
                   count(*) FILTER (WHERE j.status = 'running') AS running,
                   count(*) FILTER (WHERE j.status IN ('queued', 'retrying')) AS queued
            FROM unnest(v_orgs) AS o (id)
            CROSS JOIN LATERAL (
                SELECT l.queue, l.organization_id, l.status FROM jobqueue.job AS l
                WHERE l.organization_id = o.id AND l.status IN ('queued', 'running', 'retrying')
                  AND (list_queue_usage.queue IS NULL OR l.queue = list_queue_usage.queue)
            ) AS j
            GROUP BY j.queue, j.organization_id
        ), pairs AS (
            SELECT l.queue, l.organization_id FROM live AS l
            UNION
            SELECT p.queue, p.organization_id FROM jobqueue.organization_policy AS p
            WHERE p.organization_id = ANY (v_orgs)
              AND (list_queue_usage.queue IS NULL OR p.queue = list_queue_usage.queue)
        )
        SELECT x.queue, o.name, coalesce(op.paused, false), coalesce(qp.paused, false),
               coalesce(op.concurrency, qp.organization_concurrency), coalesce(op.weight, 1),
               coalesce(l.running, 0), coalesce(l.queued, 0)
        FROM pairs AS x
        JOIN jobqueue.organization AS o ON o.id = x.organization_id
        LEFT JOIN live AS l ON l.queue = x.queue AND l.organization_id = x.organization_id
        LEFT JOIN jobqueue.queue_policy AS qp ON qp.queue = x.queue
        LEFT JOIN jobqueue.organization_policy AS op
            ON op.queue = x.queue AND op.organization_id = x.organization_id
        ORDER BY x.queue, o.name;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.list_job_type_limits(actor text DEFAULT NULL)
RETURNS SETOF jobqueue.job_type_settings
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    -- Settings of global definitions, like the job types themselves.
    SELECT p.job_type, p.concurrency, p.start_limit, p.start_period
    FROM jobqueue.job_type_policy AS p
    ORDER BY p.job_type
$$;

-- \df+ explains each public function with its header line.
COMMENT ON FUNCTION jobqueue.pause_queue(text, text, text) IS
    'pause_queue(queue, organization, actor): no job of the queue (of that organization) starts until resumed; running ones finish.';
COMMENT ON FUNCTION jobqueue.resume_queue(text, text, text) IS
    'resume_queue(queue, organization, actor): undoes pause_queue; waiting jobs start at once.';
COMMENT ON FUNCTION jobqueue.set_queue_limits(text, integer, integer, text) IS
    'set_queue_limits(queue, concurrency, organization_concurrency, actor): running jobs of the queue, and of each organization in it (the default); NULL is no cap.';
COMMENT ON FUNCTION jobqueue.set_organization_limits(text, text, integer, integer, text) IS
    'set_organization_limits(queue, organization, concurrency, weight, actor): one organization''s cap in the queue (over the default) and its weight in the round robin.';
COMMENT ON FUNCTION jobqueue.set_job_type_limits(text, integer, integer, interval, text) IS
    'set_job_type_limits(name, concurrency, start_limit, start_period, actor): running jobs of the type, all organizations; starts per organization and period.';
COMMENT ON FUNCTION jobqueue.set_job_priority(bigint, integer, text) IS
    'set_job_priority(job_id, priority, actor): a waiting, queued or retrying job''s priority; JQC02 once it started.';
COMMENT ON FUNCTION jobqueue.list_queues(text) IS
    'list_queues(actor): each queue with its pause, caps, and the running and queued jobs of the organizations the actor may see.';
COMMENT ON FUNCTION jobqueue.list_queue_usage(text, text, text) IS
    'list_queue_usage(actor, queue, organization): each organization in each queue: pauses, cap, weight, running and queued jobs.';
COMMENT ON FUNCTION jobqueue.list_job_type_limits(text) IS
    'list_job_type_limits(actor): each job type''s running cap and start limit.';
