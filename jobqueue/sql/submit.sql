-- submit.sql: job types and submitting jobs.
--
-- Owns:      the job type registry; validation, dedup, rate limits and dependencies at submit.
-- Public:    register_job_type(name, handler, queue, priority, ..., execution, actor)
--                                                          -- upsert a job type
--            set_job_type_enabled(name, enabled, actor)
--            list_job_types(actor)
--            submit_jobs(jobs jsonb[], actor)   -- many jobs, set-based
--            submit_job(job_type, params, organization, ..., actor)  -- one job, same rules;
--            its errors are the batch's without the element's "jobs[0]: " prefix.
--            A job may name its own queue, max_retries and timeout (else its type's).
-- Internal:  _parse_submissions(jobs, actor)  -- the element-by-element reading of a batch;
--            submit_jobs reads a batch in one query and calls it only to name an error
--            _job_hash(type, organization_id, params), _rate_window_start(period),
--            _timeout_of(json), _overrides_valid(queue, max_retries, timeout),
--            _raise_rate_limited(...), _json_too_deep(value)  -- one definition each for
--            every submit path
--            _enabled_types_hint()     -- what an unknown type's error says is allowed
-- Limits:    params are a JSON object of at most 256 KiB nested at most 100 levels deep (the
--            HTTP API's limits), whichever path submits them.
-- States:    inserts 'queued' (runnable, or scheduled for run_at) or 'waiting' (dependencies).
-- Dedup:     job_hash = sha256(type, organization, canonical params); the partial unique index
--            job_active_hash_key makes a second active copy impossible (ON CONFLICT DO NOTHING),
--            and the type's dedup_window folds a submit into a recently completed job.
-- Rate:      per (type, organization) fixed windows in jobqueue.rate_counter; the upsert
--            serialises concurrent submitters and a refused batch rolls its increments back.
-- Locks:     the rate counter rows; dependencies' rows are read FOR SHARE so a dependency cannot
--            end between the check and the insert.
-- Raises:    JQV01 unknown/disabled type, JQV02 params, JQV03 bad argument (params nested
--            too deep included), JQV04 dependency,
--            JQV05 bad job type definition, JQV06 params too large, JQA02 forbidden,
--            JQN02 organization not found, JQR01 rate limited.
-- Events:    'submitted' per new job (lifecycle trigger); duplicates write nothing.

-- The form from before job types had an execution: a second overload would make calls
-- that leave execution out ambiguous.
DROP FUNCTION IF EXISTS jobqueue.register_job_type(
    text, text, text, integer, integer, interval, interval, interval, interval, integer,
    interval, boolean, text);

CREATE OR REPLACE FUNCTION jobqueue.register_job_type(
    name text,
    handler text,
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    max_retries integer DEFAULT 3,
    timeout interval DEFAULT '5 minutes',
    backoff_base interval DEFAULT '1 second',
    backoff_max interval DEFAULT '10 minutes',
    dedup_window interval DEFAULT NULL,
    rate_limit integer DEFAULT NULL,
    rate_period interval DEFAULT NULL,
    enabled boolean DEFAULT true,
    execution text DEFAULT NULL,
    actor text DEFAULT NULL
) RETURNS SETOF jobqueue.job_type
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM jobqueue._require_admin(actor, 'register a job type');
    -- NULL leaves the choice to the worker (its --execution); the CHECK would refuse other
    -- values too, but in words no one asked for.
    IF register_job_type.execution NOT IN ('inline', 'process') THEN
        RAISE EXCEPTION 'invalid job type "%": execution must be inline, process or null '
                        '(the worker''s choice), got %',
            left(register_job_type.name, 100), quote_literal(left(register_job_type.execution, 100))
            USING ERRCODE = 'JQV05';
    END IF;
    RETURN QUERY
        INSERT INTO jobqueue.job_type AS t (
            name, handler, queue, priority, max_retries, timeout, backoff_base, backoff_max,
            dedup_window, rate_limit, rate_period, enabled, execution
        ) VALUES (
            register_job_type.name, register_job_type.handler, register_job_type.queue,
            register_job_type.priority, register_job_type.max_retries, register_job_type.timeout,
            register_job_type.backoff_base, register_job_type.backoff_max,
            register_job_type.dedup_window, register_job_type.rate_limit,
            register_job_type.rate_period, register_job_type.enabled,
            register_job_type.execution
        )
        ON CONFLICT (name) DO UPDATE SET
            handler = excluded.handler, queue = excluded.queue, priority = excluded.priority,
            max_retries = excluded.max_retries, timeout = excluded.timeout,
            backoff_base = excluded.backoff_base, backoff_max = excluded.backoff_max,
            dedup_window = excluded.dedup_window, rate_limit = excluded.rate_limit,
            rate_period = excluded.rate_period, enabled = excluded.enabled,
            execution = excluded.execution, updated_at = now()
        RETURNING t.*;
EXCEPTION
    WHEN check_violation OR not_null_violation THEN
        RAISE EXCEPTION 'invalid job type "%": %', left(register_job_type.name, 100), SQLERRM
            USING ERRCODE = 'JQV05';
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.set_job_type_enabled(
    name text, enabled boolean, actor text DEFAULT NULL
) RETURNS SETOF jobqueue.job_type
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM jobqueue._require_admin(actor, 'change a job type');
    RETURN QUERY
        UPDATE jobqueue.job_type AS t
        SET enabled = coalesce(set_job_type_enabled.enabled, t.enabled), updated_at = now()
        WHERE t.name = set_job_type_enabled.name
        RETURNING t.*;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job type named "%"', left(set_job_type_enabled.name, 100)
            USING ERRCODE = 'JQV01';
    END IF;
END
$$;

-- What an unknown job type's error says is allowed: the enabled types (a catalogue every
-- user may see), the first 20 by name.
CREATE OR REPLACE FUNCTION jobqueue._enabled_types_hint() RETURNS text
LANGUAGE sql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN count(*) = 0 THEN 'no job type is enabled; register one first'
                ELSE 'enabled job types: '
                     || string_agg(t.name, ', ' ORDER BY t.name) FILTER (WHERE t.n <= 20)
                     || CASE WHEN count(*) > 20 THEN ', …' ELSE '' END END
    FROM (SELECT t.name, row_number() OVER (ORDER BY t.name) AS n FROM jobqueue.job_type AS t
          WHERE t.enabled ORDER BY t.name LIMIT 21) AS t
$$;

CREATE OR REPLACE FUNCTION jobqueue.list_job_types(actor text DEFAULT NULL)
RETURNS SETOF jobqueue.job_type
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    -- Every authenticated user may see the catalogue of types; it holds no organization data.
    SELECT * FROM jobqueue.job_type ORDER BY name
$$;

-- The dedup key of a job: its type, organization and canonical params (jsonb's text form
-- orders keys). One definition for every submit path; a SQL expression, inlined where used.
-- STABLE, as convert_to is: the planner inlines a function only when it claims no more than
-- its body does, and each call of a function not inlined cost about 3 µs more per job.
-- Inlining is also why it pins no search_path (a SET clause stops the inlining, and costs
-- about 15 µs per job of a batch): its body is parsed under its caller's pinned path, and
-- names every type, function and operator with its schema, so no path can change it.
CREATE OR REPLACE FUNCTION jobqueue._job_hash(
    p_job_type text, p_organization_id bigint, p_params jsonb
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.sha256(pg_catalog.convert_to(
        p_job_type OPERATOR(pg_catalog.||) E'\x1f'
        OPERATOR(pg_catalog.||) p_organization_id::pg_catalog.text
        OPERATOR(pg_catalog.||) E'\x1f' OPERATOR(pg_catalog.||) p_params::pg_catalog.text,
        'UTF8'))
$$;

-- Whether JSON nests containers more than 100 levels deep, the limit of the HTTP API: deeper
-- values would be stored, but every Python reader (the API, the dashboard, the worker) fails
-- on them. The path stops at level 100, so a value 5,000 levels deep costs no more to refuse
-- than one 101 levels deep. Inlined into its callers for the reasons of _job_hash.
CREATE OR REPLACE FUNCTION jobqueue._json_too_deep(p_value jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.jsonb_path_exists(p_value,
        'strict $.**{100} ? (@.type() == "object" || @.type() == "array")'::pg_catalog.jsonpath)
$$;

-- The start of the fixed rate-limit window that holds now.
CREATE OR REPLACE FUNCTION jobqueue._rate_window_start(p_period interval) RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.to_timestamp(
        floor(extract(epoch FROM now()) / extract(epoch FROM p_period))
        * extract(epoch FROM p_period))
$$;

-- The refusal of a submit over its type's rate limit, with retry_after in the DETAIL.
CREATE OR REPLACE FUNCTION jobqueue._raise_rate_limited(
    p_job_type text, p_organization text, p_limit integer, p_period interval,
    p_window_start timestamptz
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_retry_after integer :=
        greatest(ceil(extract(epoch FROM p_window_start + p_period - now()))::integer, 1);
BEGIN
    RAISE EXCEPTION 'rate limit of % per % reached for job type "%" in "%"; retry in % s',
        p_limit, p_period, p_job_type, p_organization, v_retry_after
        USING ERRCODE = 'JQR01', DETAIL = format('{"retry_after": %s}', v_retry_after);
END
$$;

-- A job's own timeout as a submit names it: seconds (a JSON number) or an interval's text.
-- Inlined into its callers for the reasons of _job_hash, so it names every type, function and
-- operator with its schema.
CREATE OR REPLACE FUNCTION jobqueue._timeout_of(p_value jsonb) RETURNS interval
LANGUAGE sql STABLE
AS $$
    SELECT CASE
        WHEN pg_catalog.jsonb_typeof(p_value) OPERATOR(pg_catalog.=) 'number'
            THEN pg_catalog.make_interval(0, 0, 0, 0, 0, 0,
                (p_value OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[])::pg_catalog.float8)
        WHEN pg_catalog.jsonb_typeof(p_value) OPERATOR(pg_catalog.=) 'string'
            THEN (p_value OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[])::pg_catalog.interval
    END
$$;

-- Whether a job's own queue, retries and timeout (NULL: its type's) are acceptable: the
-- rules of a job type's own settings (migration 0001). Inlined, as _timeout_of.
CREATE OR REPLACE FUNCTION jobqueue._overrides_valid(
    p_queue text, p_max_retries integer, p_timeout interval
) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT (p_queue IS NULL
            OR p_queue OPERATOR(pg_catalog.~) '^[A-Za-z0-9_.-]{1,40}$'::pg_catalog.text)
       AND (p_max_retries IS NULL
            OR (p_max_retries OPERATOR(pg_catalog.>=) 0
                AND p_max_retries OPERATOR(pg_catalog.<=) 100))
       AND (p_timeout IS NULL
            OR (p_timeout OPERATOR(pg_catalog.>) '0'::pg_catalog.interval
                AND p_timeout OPERATOR(pg_catalog.<=) '7 days'::pg_catalog.interval))
$$;

-- Parses and validates a batch; raises on the first bad element, naming its index.
CREATE OR REPLACE FUNCTION jobqueue._parse_submissions(p_jobs jsonb, p_actor text)
RETURNS SETOF jobqueue.submission
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_max_params_bytes constant integer := 262144;
    v_max_batch constant integer := 50000;
    v_elem jsonb;
    v_unknown_key text;
    v_ord bigint;
    v_type jobqueue.job_type;
    v_org_cache jsonb := '{}';
    v_org_id bigint;
    v_params jsonb;
    v_priority integer;
    v_run_at timestamptz;
    v_queue text;
    v_max_retries integer;
    v_timeout interval;
    v_deps bigint[];
    v_dedup boolean;
    v_out jobqueue.submission;
BEGIN
    IF p_jobs IS NULL OR jsonb_typeof(p_jobs) <> 'array' THEN
        RAISE EXCEPTION 'jobs must be a JSON array' USING ERRCODE = 'JQV03';
    END IF;
    IF jsonb_array_length(p_jobs) > v_max_batch THEN
        RAISE EXCEPTION 'at most % jobs per call, got %', v_max_batch, jsonb_array_length(p_jobs)
            USING ERRCODE = 'JQV06';
    END IF;
    -- A misspelt key ("priorty") would otherwise be ignored and the job run with defaults;
    -- one query for the whole batch.
    SELECT x.o, k INTO v_ord, v_unknown_key
    FROM jsonb_array_elements(p_jobs) WITH ORDINALITY AS x (e, o),
         jsonb_object_keys(CASE jsonb_typeof(x.e) WHEN 'object' THEN x.e ELSE '{}' END) AS k
    WHERE k NOT IN ('job_type', 'organization', 'params', 'priority', 'run_at', 'depends_on',
                    'dedup', 'queue', 'max_retries', 'timeout')
    ORDER BY x.o
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'jobs[%]: unknown key "%"', v_ord - 1, left(v_unknown_key, 50)
            USING ERRCODE = 'JQV03';
    END IF;
    FOR v_elem, v_ord IN SELECT e, o FROM jsonb_array_elements(p_jobs) WITH ORDINALITY AS x (e, o)
    LOOP
        IF jsonb_typeof(v_elem) <> 'object' THEN
            RAISE EXCEPTION 'jobs[%] must be a JSON object', v_ord - 1 USING ERRCODE = 'JQV03';
        END IF;
        IF v_type.name IS DISTINCT FROM v_elem ->> 'job_type' THEN
            SELECT * INTO v_type FROM jobqueue.job_type AS t
            WHERE t.name = v_elem ->> 'job_type' AND t.enabled;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'jobs[%]: no enabled job type named %; %', v_ord - 1,
                    coalesce('"' || left(v_elem ->> 'job_type', 100) || '"', '(missing)'),
                    jobqueue._enabled_types_hint()
                    USING ERRCODE = 'JQV01';
            END IF;
        END IF;
        -- Batches mostly name one organization: check access once per name.
        v_org_id := (v_org_cache ->> coalesce(v_elem ->> 'organization', ''))::bigint;
        IF v_org_id IS NULL THEN
            v_org_id := jobqueue._require_organization(p_actor, v_elem ->> 'organization');
            v_org_cache := v_org_cache || jsonb_build_object(v_elem ->> 'organization', v_org_id);
        END IF;

        v_params := v_elem -> 'params';
        IF v_params IS NULL OR v_params = 'null' THEN
            v_params := '{}';
        ELSIF jsonb_typeof(v_params) <> 'object' THEN
            RAISE EXCEPTION 'jobs[%]: params must be a JSON object, got %', v_ord - 1,
                jsonb_typeof(v_params) USING ERRCODE = 'JQV02';
        END IF;
        IF octet_length(v_params::text) > v_max_params_bytes THEN
            RAISE EXCEPTION 'jobs[%]: params are % bytes, over the limit of %', v_ord - 1,
                octet_length(v_params::text), v_max_params_bytes USING ERRCODE = 'JQV06';
        END IF;
        IF jobqueue._json_too_deep(v_params) THEN
            RAISE EXCEPTION 'jobs[%]: params are nested more than 100 levels deep', v_ord - 1
                USING ERRCODE = 'JQV03';
        END IF;
        IF jsonb_typeof(coalesce(v_elem -> 'depends_on', '[]')) NOT IN ('array', 'null') THEN
            RAISE EXCEPTION 'jobs[%]: depends_on must be an array of job ids', v_ord - 1
                USING ERRCODE = 'JQV03';
        END IF;

        BEGIN
            v_priority := coalesce((v_elem ->> 'priority')::integer, v_type.priority);
            v_run_at := coalesce((v_elem ->> 'run_at')::timestamptz, now());
            v_dedup := coalesce((v_elem ->> 'dedup')::boolean, true);
            v_queue := v_elem ->> 'queue';
            v_max_retries := (v_elem ->> 'max_retries')::integer;
            v_timeout := jobqueue._timeout_of(v_elem -> 'timeout');
            v_deps := coalesce(
                (SELECT array_agg(DISTINCT d::bigint ORDER BY d::bigint)
                 FROM jsonb_array_elements_text(
                     CASE jsonb_typeof(v_elem -> 'depends_on')
                         WHEN 'array' THEN v_elem -> 'depends_on' ELSE '[]' END) AS d),
                '{}');
        EXCEPTION
            WHEN invalid_text_representation OR numeric_value_out_of_range
                 OR invalid_datetime_format OR datetime_field_overflow
                 OR interval_field_overflow THEN
                RAISE EXCEPTION 'jobs[%]: %', v_ord - 1, SQLERRM USING ERRCODE = 'JQV03';
        END;
        IF NOT jobqueue._overrides_valid(v_queue, v_max_retries, v_timeout)
           OR jsonb_typeof(coalesce(v_elem -> 'timeout', 'null')) NOT IN ('number', 'string', 'null')
           OR jsonb_typeof(coalesce(v_elem -> 'queue', 'null')) NOT IN ('string', 'null') THEN
            RAISE EXCEPTION 'jobs[%]: a job''s own queue must be 1-40 letters, digits, "_", "." '
                'or "-", its max_retries 0-100 and its timeout above 0 and at most 7 days',
                v_ord - 1 USING ERRCODE = 'JQV03';
        END IF;
        IF v_priority NOT BETWEEN -1000 AND 1000 THEN
            RAISE EXCEPTION 'jobs[%]: priority must be between -1000 and 1000, got %',
                v_ord - 1, v_priority USING ERRCODE = 'JQV03';
        END IF;
        IF v_run_at > now() + interval '1 year' OR v_run_at < now() - interval '1 year' THEN
            RAISE EXCEPTION 'jobs[%]: run_at must be within a year of now', v_ord - 1
                USING ERRCODE = 'JQV03';
        END IF;
        IF cardinality(v_deps) > 100 THEN
            RAISE EXCEPTION 'jobs[%]: at most 100 dependencies', v_ord - 1 USING ERRCODE = 'JQV04';
        END IF;

        v_out := ROW(
            v_ord, v_type.name, v_org_id, coalesce(v_queue, v_type.queue), v_priority, v_params,
            v_run_at, v_deps,
            CASE WHEN v_dedup THEN jobqueue._job_hash(v_type.name, v_org_id, v_params) END,
            coalesce(v_max_retries, v_type.max_retries), coalesce(v_timeout, v_type.timeout),
            v_type.dedup_window, NULL, NULL, false
        );
        RETURN NEXT v_out;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.submit_jobs(jobs jsonb, actor text DEFAULT NULL)
RETURNS SETOF jobqueue.job_info
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_seq constant regclass := pg_get_serial_sequence('jobqueue.job', 'id');
    v_subs jobqueue.submission[];
    v_valid boolean;
    v_org_ids bigint[];
    v_has_deps boolean;
    v_has_window boolean;
    v_has_rate boolean;
    v_new bigint;
    v_inserted bigint;
    v_missing bigint;
    v_bad record;
    v_over record;
BEGIN
    -- The whole batch is read and checked in one query. Anything it finds wrong (or a cast
    -- that fails) sends the batch to _parse_submissions, which walks it element by element
    -- and raises the first error by index, so a refused batch gets the same error either way.
    -- Only reads happen inside this block: its subtransaction has nothing to undo.
    BEGIN
        SELECT array_agg(ROW(p.ord, p.job_type, p.organization_id, p.queue, p.priority, p.params,
                             p.run_at, p.depends_on,
                             CASE WHEN p.dedup
                                  THEN jobqueue._job_hash(p.job_type, p.organization_id, p.params)
                             END,
                             p.max_retries, p.timeout, p.dedup_window, 'queued',
                             nextval(v_seq), false
                         )::jobqueue.submission),
               bool_and(coalesce(
                   p.readable AND p.priority BETWEEN -1000 AND 1000
                   AND p.run_at BETWEEN now() - interval '1 year' AND now() + interval '1 year'
                   AND cardinality(p.depends_on) <= 100
                   AND array_position(p.depends_on, NULL) IS NULL, false)),
               array_agg(DISTINCT p.organization_id),
               bool_or(cardinality(p.depends_on) > 0),
               bool_or(p.dedup_window IS NOT NULL),
               bool_or(p.rate_limit IS NOT NULL),
               count(*)
        INTO v_subs, v_valid, v_org_ids, v_has_deps, v_has_window, v_has_rate, v_new
        FROM (
            SELECT x.o AS ord, t.name AS job_type, g.id AS organization_id,
                   coalesce(x.e ->> 'queue', t.queue) AS queue,
                   coalesce((x.e ->> 'max_retries')::integer, t.max_retries) AS max_retries,
                   coalesce(jobqueue._timeout_of(x.e -> 'timeout'), t.timeout) AS timeout,
                   t.dedup_window, t.rate_limit,
                   coalesce((x.e ->> 'priority')::integer, t.priority) AS priority,
                   coalesce((x.e ->> 'run_at')::timestamptz, now()) AS run_at,
                   coalesce((x.e ->> 'dedup')::boolean, true) AS dedup,
                   coalesce(nullif(x.e -> 'params', 'null'), '{}') AS params,
                   CASE WHEN x.e ? 'depends_on' THEN coalesce(
                       (SELECT array_agg(DISTINCT d::bigint ORDER BY d::bigint)
                        FROM jsonb_array_elements_text(
                            CASE jsonb_typeof(x.e -> 'depends_on')
                                WHEN 'array' THEN x.e -> 'depends_on' ELSE '[]' END) AS d),
                       '{}') ELSE '{}' END AS depends_on,
                   jsonb_typeof(x.e) = 'object'
                   AND x.e - '{job_type,organization,params,priority,run_at,depends_on,dedup,
                               queue,max_retries,timeout}'::text[] = '{}'
                   AND jobqueue._overrides_valid(x.e ->> 'queue', (x.e ->> 'max_retries')::integer,
                                                 jobqueue._timeout_of(x.e -> 'timeout'))
                   AND jsonb_typeof(coalesce(x.e -> 'queue', 'null')) IN ('string', 'null')
                   AND jsonb_typeof(coalesce(x.e -> 'timeout', 'null'))
                       IN ('number', 'string', 'null')
                   AND t.name IS NOT NULL AND g.id IS NOT NULL
                   AND jsonb_typeof(coalesce(nullif(x.e -> 'params', 'null'), '{}')) = 'object'
                   AND octet_length(coalesce(x.e -> 'params', '{}')::text) <= 262144
                   AND NOT jobqueue._json_too_deep(coalesce(x.e -> 'params', '{}'))
                   AND jsonb_typeof(coalesce(x.e -> 'depends_on', '[]')) IN ('array', 'null')
                   AS readable
            FROM jsonb_array_elements(submit_jobs.jobs) WITH ORDINALITY AS x (e, o)
            LEFT JOIN jobqueue.job_type AS t ON t.name = x.e ->> 'job_type' AND t.enabled
            LEFT JOIN jobqueue.organization AS g ON g.name = x.e ->> 'organization'
            -- Ids in input order: nextval runs as the sorted rows are aggregated.
            ORDER BY x.o
        ) AS p;
        IF v_valid AND v_new <= 50000 AND actor IS NOT NULL THEN
            v_valid := NOT EXISTS (SELECT FROM unnest(v_org_ids) AS o (id)
                                   WHERE NOT jobqueue._can_access_id(actor, o.id));
        END IF;
    EXCEPTION WHEN OTHERS THEN
        v_valid := false;
    END;
    IF v_new = 0 AND jsonb_typeof(submit_jobs.jobs) = 'array' THEN
        RETURN;
    END IF;
    IF v_valid IS NOT TRUE OR v_new > 50000 THEN
        -- Raises the first error by index. Should it find none, its reading is the one used.
        v_subs := ARRAY(SELECT p FROM jobqueue._parse_submissions(submit_jobs.jobs, actor) AS p);
        SELECT bool_or(cardinality(s.depends_on) > 0), true, true, count(*)
        INTO v_has_deps, v_has_window, v_has_rate, v_new
        FROM unnest(v_subs) AS s;
    END IF;

    IF v_has_deps THEN
        -- Dependencies must exist in the same organization and not have failed. They are
        -- share-locked first and checked in the next statement, whose snapshot is taken after
        -- the lock: a dependency that ended while this call waited for its lock is seen as
        -- ended (a dependent of a job that died meanwhile would otherwise wait forever), and
        -- none can end between the check and the insert.
        PERFORM FROM jobqueue.job AS j
        WHERE j.id IN (SELECT unnest(s.depends_on) FROM unnest(v_subs) AS s)
        ORDER BY j.id FOR SHARE;
        SELECT s.ord, d.dep, j.organization_id AS dep_org, j.status AS dep_status,
               s.organization_id
        INTO v_bad
        FROM unnest(v_subs) AS s
        CROSS JOIN LATERAL unnest(s.depends_on) AS d (dep)
        LEFT JOIN jobqueue.job AS j ON j.id = d.dep
        WHERE j.id IS NULL OR j.organization_id <> s.organization_id
           OR j.status IN ('dead', 'canceled')
        ORDER BY s.ord
        LIMIT 1;
        IF FOUND THEN
            IF v_bad.dep_status IS NULL OR v_bad.dep_org <> v_bad.organization_id THEN
                RAISE EXCEPTION 'jobs[%]: dependency % not found in the same organization',
                    v_bad.ord - 1, v_bad.dep USING ERRCODE = 'JQV04';
            END IF;
            RAISE EXCEPTION 'jobs[%]: dependency % is already %', v_bad.ord - 1, v_bad.dep,
                v_bad.dep_status USING ERRCODE = 'JQV04';
        END IF;
    END IF;

    IF v_has_deps OR v_has_window THEN
        -- Status, the dedup window, and an id for every job that is new.
        v_subs := ARRAY(
            SELECT ROW(s.ord, s.job_type, s.organization_id, s.queue, s.priority, s.params,
                       s.run_at, s.depends_on, s.job_hash, s.max_retries, s.timeout,
                       s.dedup_window,
                       CASE WHEN EXISTS (SELECT FROM unnest(s.depends_on) AS d (dep)
                                         JOIN jobqueue.job AS j ON j.id = d.dep
                                         WHERE j.status <> 'completed')
                            THEN 'waiting' ELSE 'queued' END::jobqueue.job_status,
                       coalesce(w.id, s.job_id, nextval(v_seq)),
                       w.id IS NOT NULL)::jobqueue.submission
            FROM unnest(v_subs) AS s
            LEFT JOIN LATERAL (
                SELECT j.id FROM jobqueue.job AS j
                WHERE s.dedup_window IS NOT NULL AND j.job_hash = s.job_hash
                  AND j.status = 'completed' AND j.finished_at > now() - s.dedup_window
                ORDER BY j.finished_at DESC LIMIT 1
            ) AS w ON true
            ORDER BY s.ord);
        SELECT count(*) INTO v_new FROM unnest(v_subs) AS s WHERE NOT s.duplicate;
    END IF;

    WITH inserted AS (
        INSERT INTO jobqueue.job (
            id, job_type, organization_id, queue, status, priority, params, job_hash,
            max_retries, timeout, run_at, created_by
        ) OVERRIDING SYSTEM VALUE
        SELECT s.job_id, s.job_type, s.organization_id, s.queue, s.status, s.priority, s.params,
               s.job_hash, s.max_retries, s.timeout, s.run_at, actor
        FROM unnest(v_subs) AS s
        WHERE NOT s.duplicate
        -- Hash order, not input order: a conflicting insert waits for the other transaction's
        -- row, and two batches naming the same jobs in different orders would wait for each
        -- other. Within a batch the first of equal hashes still wins (its id is the lower).
        ORDER BY s.job_hash, s.ord
        ON CONFLICT (job_hash) WHERE status IN ('waiting', 'queued', 'running', 'retrying')
            DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO v_inserted FROM inserted;

    v_missing := v_new - v_inserted;
    WHILE v_missing > 0 LOOP
        -- A submit that met an active job with the same hash (another submitter's, or an
        -- earlier element of this batch) answers with that job. This is a new statement, so it
        -- sees a conflicting job that another transaction committed while this one waited on
        -- it. Should that job have ended meanwhile, the newest of its hash answers.
        SELECT array_agg(r.sub), count(*) FILTER (WHERE r.unresolved)
        INTO v_subs, v_missing
        FROM (
            SELECT ROW(s.ord, s.job_type, s.organization_id, s.queue, s.priority, s.params,
                       s.run_at, s.depends_on, s.job_hash, s.max_retries, s.timeout,
                       s.dedup_window, s.status, coalesce(c.id, s.job_id),
                       s.duplicate OR c.id IS NOT NULL)::jobqueue.submission AS sub,
                   c.met AND c.id IS NULL AS unresolved
            FROM unnest(v_subs) AS s
            LEFT JOIN LATERAL (
                SELECT true AS met, coalesce(
                    (SELECT j.id FROM jobqueue.job AS j
                     WHERE j.job_hash = s.job_hash
                       AND j.status IN ('waiting', 'queued', 'running', 'retrying')),
                    (SELECT j.id FROM jobqueue.job AS j WHERE j.job_hash = s.job_hash
                     ORDER BY j.id DESC LIMIT 1)) AS id
                WHERE NOT s.duplicate
                  AND NOT EXISTS (SELECT FROM jobqueue.job AS j WHERE j.id = s.job_id)
            ) AS c ON true
            ORDER BY s.ord
        ) AS r;
        IF v_missing > 0 THEN
            -- None: the job it met has completed since, and without a dedup window a
            -- completed job gives its hash up (worker.sql). Nothing active holds the hash any
            -- more, so the element is inserted after all.
            WITH inserted AS (
                INSERT INTO jobqueue.job (
                    id, job_type, organization_id, queue, status, priority, params, job_hash,
                    max_retries, timeout, run_at, created_by
                ) OVERRIDING SYSTEM VALUE
                SELECT s.job_id, s.job_type, s.organization_id, s.queue, s.status, s.priority,
                       s.params, s.job_hash, s.max_retries, s.timeout, s.run_at, actor
                FROM unnest(v_subs) AS s
                WHERE NOT s.duplicate
                  AND NOT EXISTS (SELECT FROM jobqueue.job AS j WHERE j.id = s.job_id)
                ORDER BY s.job_hash, s.ord
                ON CONFLICT (job_hash) WHERE status IN ('waiting', 'queued', 'running', 'retrying')
                    DO NOTHING
                RETURNING 1
            )
            SELECT v_missing - count(*) INTO v_missing FROM inserted;
        END IF;
    END LOOP;

    IF v_has_deps THEN
        INSERT INTO jobqueue.job_dependency (job_id, depends_on_id)
        SELECT s.job_id, d.dep
        FROM unnest(v_subs) AS s CROSS JOIN LATERAL unnest(s.depends_on) AS d (dep)
        WHERE NOT s.duplicate;
    END IF;

    IF v_has_rate THEN
        -- Rate limits count accepted new jobs only. The first window over its limit refuses
        -- the whole call, and the rollback takes every increment (and every insert) back.
        WITH counts AS (
            SELECT s.job_type, s.organization_id, t.rate_limit, t.rate_period, count(*) AS n,
                   jobqueue._rate_window_start(t.rate_period) AS window_start
            FROM unnest(v_subs) AS s
            JOIN jobqueue.job_type AS t ON t.name = s.job_type
            WHERE NOT s.duplicate AND t.rate_limit IS NOT NULL
            GROUP BY s.job_type, s.organization_id, t.rate_limit, t.rate_period
        ), bumped AS (
            INSERT INTO jobqueue.rate_counter AS r (job_type, organization_id, window_start, count)
            SELECT c.job_type, c.organization_id, c.window_start, c.n FROM counts AS c
            ORDER BY c.job_type, c.organization_id
            ON CONFLICT ON CONSTRAINT rate_counter_pkey
                DO UPDATE SET count = r.count + excluded.count
            RETURNING r.job_type, r.organization_id, r.window_start, r.count
        )
        SELECT b.job_type, o.name AS organization, c.rate_limit, c.rate_period, b.window_start
        INTO v_over
        FROM bumped AS b
        JOIN counts AS c USING (job_type, organization_id)
        JOIN jobqueue.organization AS o ON o.id = b.organization_id
        WHERE b.count > c.rate_limit
        LIMIT 1;
        IF FOUND THEN
            PERFORM jobqueue._raise_rate_limited(v_over.job_type, v_over.organization,
                v_over.rate_limit, v_over.rate_period, v_over.window_start);
        END IF;
    END IF;

    IF v_inserted = cardinality(v_subs) THEN
        -- Every job is new, and these are its columns as just inserted (the rest are the
        -- table's defaults for a new job): reading a thousand rows back would cost more than
        -- the insert's own index maintenance.
        RETURN QUERY
            SELECT s.job_id, s.job_type, o.name, s.queue, s.status, s.priority, s.params, 0,
                   s.max_retries, s.timeout, s.run_at, NULL::timestamptz, NULL::smallint,
                   NULL::text, NULL::jsonb, NULL::text, false, actor, now(), NULL::timestamptz,
                   NULL::timestamptz, now(), s.depends_on, false
            FROM unnest(v_subs) AS s
            JOIN jobqueue.organization AS o ON o.id = s.organization_id
            ORDER BY s.ord;
        RETURN;
    END IF;
    -- Duplicates answer with their job as it is now, and its own dependencies.
    RETURN QUERY
        SELECT i.id, i.job_type, i.organization, i.queue, i.status, i.priority, i.params,
               i.attempt, i.max_retries, i.timeout, i.run_at, i.next_retry_at, i.progress,
               i.progress_message, i.result, i.last_error, i.cancel_requested, i.created_by,
               i.created_at, i.started_at, i.finished_at, i.updated_at, i.depends_on,
               s.duplicate
        FROM unnest(v_subs) WITH ORDINALITY AS s
        JOIN jobqueue._job_infos(ARRAY(SELECT x.job_id FROM unnest(v_subs) AS x ORDER BY x.ord))
            WITH ORDINALITY AS i ON i.ordinality = s.ordinality
        ORDER BY s.ord;
END
$$;

-- Per-job queue, max_retries and timeout came after these (migration 0007's release).
DROP FUNCTION IF EXISTS jobqueue.submit_job(
    text, jsonb, text, integer, timestamptz, bigint[], boolean, text);

CREATE OR REPLACE FUNCTION jobqueue.submit_job(
    job_type text,
    params jsonb DEFAULT '{}',
    organization text DEFAULT NULL,
    priority integer DEFAULT NULL,
    run_at timestamptz DEFAULT NULL,
    depends_on bigint[] DEFAULT NULL,
    dedup boolean DEFAULT true,
    queue text DEFAULT NULL,
    max_retries integer DEFAULT NULL,
    timeout interval DEFAULT NULL,
    actor text DEFAULT NULL
) RETURNS jobqueue.job_info
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_type jobqueue.job_type;
    v_org_id bigint;
    v_params jsonb := coalesce(nullif(submit_job.params, 'null'), '{}');
    v_priority integer;
    v_run_at timestamptz := coalesce(submit_job.run_at, now());
    v_hash bytea;
    v_job jobqueue.job;
    v_id bigint;
    v_window_start timestamptz;
    v_count integer;
    v_out jobqueue.job_info;
    v_state text;
    v_message text;
    v_detail text;
BEGIN
    -- One job without dependencies takes a path of its own: a handful of statements with
    -- cached plans instead of the batch machinery. Dependencies, and any input this path does
    -- not accept, go to submit_jobs as a batch of one, so an error is the batch's, word for
    -- word, and the rules below are the batch's too.
    SELECT * INTO v_type FROM jobqueue.job_type AS t
    WHERE t.name = submit_job.job_type AND t.enabled;
    SELECT o.id INTO v_org_id FROM jobqueue.organization AS o
    WHERE o.name = submit_job.organization;
    v_priority := coalesce(submit_job.priority, v_type.priority);
    IF NOT coalesce(
        v_type.name IS NOT NULL AND v_org_id IS NOT NULL
        AND coalesce(cardinality(submit_job.depends_on), 0) = 0
        AND jsonb_typeof(v_params) = 'object' AND octet_length(v_params::text) <= 262144
        AND NOT jobqueue._json_too_deep(v_params)
        AND v_priority BETWEEN -1000 AND 1000
        AND v_run_at BETWEEN now() - interval '1 year' AND now() + interval '1 year'
        AND jobqueue._overrides_valid(submit_job.queue, submit_job.max_retries,
                                      submit_job.timeout)
        AND (submit_job.actor IS NULL OR jobqueue._can_access_id(submit_job.actor, v_org_id)),
        false)
    THEN
        BEGIN
            SELECT * INTO v_out FROM jobqueue.submit_jobs(
                jsonb_build_array(
                    jsonb_strip_nulls(jsonb_build_object(
                        'job_type', submit_job.job_type, 'organization', submit_job.organization,
                        'priority', submit_job.priority, 'run_at', submit_job.run_at,
                        'depends_on', to_jsonb(submit_job.depends_on), 'dedup', submit_job.dedup,
                        'queue', submit_job.queue, 'max_retries', submit_job.max_retries,
                        'timeout', submit_job.timeout::text))
                    || jsonb_build_object('params', coalesce(submit_job.params, '{}'))),
                submit_job.actor);
        EXCEPTION WHEN OTHERS THEN
            -- The batch names the element ("jobs[0]: ..."); a single submit has no list.
            -- Same SQLSTATE and DETAIL; only this slow path pays for the subtransaction.
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                    v_detail = PG_EXCEPTION_DETAIL;
            v_message := regexp_replace(v_message, '^jobs\[0\]:? ', '');
            IF v_detail = '' THEN
                RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message;
            END IF;
            RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, DETAIL = v_detail;
        END;
        RETURN v_out;
    END IF;

    IF coalesce(submit_job.dedup, true) THEN
        v_hash := jobqueue._job_hash(v_type.name, v_org_id, v_params);
    END IF;
    IF v_type.dedup_window IS NOT NULL AND v_hash IS NOT NULL THEN
        SELECT j.id INTO v_id FROM jobqueue.job AS j
        WHERE j.job_hash = v_hash AND j.status = 'completed'
          AND j.finished_at > now() - v_type.dedup_window
        ORDER BY j.finished_at DESC LIMIT 1;
    END IF;
    WHILE v_id IS NULL LOOP
        INSERT INTO jobqueue.job AS j (
            job_type, organization_id, queue, status, priority, params, job_hash,
            max_retries, timeout, run_at, created_by
        ) VALUES (
            v_type.name, v_org_id, coalesce(submit_job.queue, v_type.queue), 'queued', v_priority,
            v_params, v_hash, coalesce(submit_job.max_retries, v_type.max_retries),
            coalesce(submit_job.timeout, v_type.timeout), v_run_at, submit_job.actor
        )
        ON CONFLICT (job_hash) WHERE status IN ('waiting', 'queued', 'running', 'retrying')
            DO NOTHING
        RETURNING j.* INTO v_job;
        EXIT WHEN v_job.id IS NOT NULL;
        -- A new statement: it sees the active job another transaction committed while this
        -- one waited on it (should it have ended since, the newest of its hash; none when it
        -- completed and gave its hash up, and then the insert goes ahead after all).
        v_id := coalesce(
            (SELECT j.id FROM jobqueue.job AS j
             WHERE j.job_hash = v_hash
               AND j.status IN ('waiting', 'queued', 'running', 'retrying')),
            (SELECT j.id FROM jobqueue.job AS j WHERE j.job_hash = v_hash
             ORDER BY j.id DESC LIMIT 1));
    END LOOP;
    IF v_id IS NOT NULL THEN
        v_out := jobqueue._job_infos(ARRAY[v_id]);
        v_out.duplicate := true;
        RETURN v_out;
    END IF;

    IF v_type.rate_limit IS NOT NULL THEN
        -- As in submit_jobs: only a new job counts, and a refusal rolls the insert back.
        v_window_start := jobqueue._rate_window_start(v_type.rate_period);
        INSERT INTO jobqueue.rate_counter AS r (job_type, organization_id, window_start, count)
        VALUES (v_type.name, v_org_id, v_window_start, 1)
        ON CONFLICT ON CONSTRAINT rate_counter_pkey DO UPDATE SET count = r.count + 1
        RETURNING r.count INTO v_count;
        IF v_count > v_type.rate_limit THEN
            PERFORM jobqueue._raise_rate_limited(v_type.name, submit_job.organization,
                v_type.rate_limit, v_type.rate_period, v_window_start);
        END IF;
    END IF;

    RETURN ROW(v_job.id, v_job.job_type, submit_job.organization, v_job.queue, v_job.status,
               v_job.priority, v_job.params, v_job.attempt, v_job.max_retries, v_job.timeout,
               v_job.run_at, v_job.next_retry_at, v_job.progress, v_job.progress_message,
               v_job.result, v_job.last_error, v_job.cancel_requested, v_job.created_by,
               v_job.created_at, v_job.started_at, v_job.finished_at, v_job.updated_at,
               '{}'::bigint[], false)::jobqueue.job_info;
END
$$;

-- \df+ explains each public function with its header line.
COMMENT ON FUNCTION jobqueue.register_job_type(text, text, text, integer, integer, interval, interval, interval, interval, integer, interval, boolean, text, text) IS
    'register_job_type(name, handler, queue, priority, ..., execution, actor): upsert a job type; durations are intervals; execution inline|process|null (the worker''s choice).';
COMMENT ON FUNCTION jobqueue.set_job_type_enabled(text, boolean, text) IS
    'set_job_type_enabled(name, enabled, actor): a disabled type refuses new jobs (JQV01).';
COMMENT ON FUNCTION jobqueue.list_job_types(text) IS
    'list_job_types(actor): every job type, by name.';
COMMENT ON FUNCTION jobqueue.submit_jobs(jsonb, text) IS
    'submit_jobs(jobs jsonb[], actor): many jobs, set-based, same rules as submit_job; one row per input, in order.';
COMMENT ON FUNCTION jobqueue.submit_job(text, jsonb, text, integer, timestamp with time zone, bigint[], boolean, text, integer, interval, text) IS
    'submit_job(job_type, params, organization, ..., queue, max_retries, timeout, actor): one job, with the rules and errors of a batch of one; its own queue, retries and timeout override its type''s; returns the job, with duplicate = true when an active (or, within the dedup window, completed) copy exists.';
