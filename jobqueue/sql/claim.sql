-- claim.sql: which vehicles a claim takes when organizations share a queue, and the counts
-- that make caps exact.
--
-- Owns:      the choice of vehicles for fetch_vehicles (worker.sql): today's FIFO walk when
--            one organization has runnable jobs and no pause or cap applies, else the fair
--            claim; the running counts of capped scopes and the start counts of start-limited
--            types; the wake-up of workers when a capped slot frees.
-- Internal:  _choose_vehicles(queues, n)        -- FIFO or fair; returns ids and the shares
--            _fair_vehicles(queues, n, rules)   -- round robin across organizations, weighted,
--                                                  within caps, pauses and start limits
--            _lock_vehicles(job_ids, held, n)   -- the chosen jobs' vehicles, locked in order
--            _record_service(shares, job_ids)   -- the round robin's memory, after the start
--            _capacity_rules(queues), _scope_key(kind, name, id)
--            _track_running(started, stopped)  -- from the lifecycle trigger
--            _admits_start(queue, organization_id, job_type)         -- procrastinate's own fetch
--            _recount_running()                 -- capacity.sql, when caps change
-- Fairness:  a flow is one organization's runnable jobs in one queue. Its place in the round
--            robin is queue_usage.served (jobs started while others competed, divided by its
--            weight), raised to at most LAG below the most served competitor so that a flow
--            coming back after a pause starts level rather than owed. A claim orders
--            candidates by priority, then served + rank / weight: priority wins across levels,
--            and within one the flows take turns.
-- Exactness: a claim takes a transaction-level advisory lock on every capped scope it may
--            start jobs in (sorted), then reads the counts; the next claim of that scope waits
--            for it to commit and reads the counts it left. The counts move in the lifecycle
--            trigger's statement (_track_running), whoever changes a job's status. Cap
--            setters take queue_policy in EXCLUSIVE mode and recount; claims and the tracking
--            take it in ROW SHARE mode, so a recount never misses a start in flight.
-- Locks:     advisory locks per capped scope; queue_policy ROW SHARE; queue_usage,
--            queue_policy, job_type_policy and start_counter rows, in that order and by key;
--            vehicles with SKIP LOCKED, as the FIFO walk does.
-- Raises:    nothing (a claim never fails for capacity: it takes fewer vehicles).
-- Events:    none; NOTIFY procrastinate's job_inserted on a queue's channels when a capped slot
--            frees, so a waiting job starts without waiting for a worker's poll.

-- Whether any pause or cap applies to a claim of these queues (NULL: every queue).
-- The policy tables hold a row per setting, so a scan is the plan; callers that run with
-- sequential scans off (claims, finishes) turn JIT off, which the inflated price of a
-- disabled scan would otherwise start (50 ms to compile).
CREATE OR REPLACE FUNCTION jobqueue._capacity_rules(p_queues text[]) RETURNS boolean
-- plpgsql keeps its plan for the session; a sql function plans on every call.
LANGUAGE plpgsql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM jobqueue.queue_policy AS p
                   WHERE (p_queues IS NULL OR p.queue = ANY (p_queues))
                     AND (p.paused OR p.concurrency IS NOT NULL
                          OR p.organization_concurrency IS NOT NULL))
        OR EXISTS (SELECT FROM jobqueue.organization_policy AS p
                   WHERE (p_queues IS NULL OR p.queue = ANY (p_queues))
                     AND (p.paused OR p.concurrency IS NOT NULL))
        OR EXISTS (SELECT FROM jobqueue.job_type_policy);
END
$$;

-- The advisory lock key of one capped scope.
CREATE OR REPLACE FUNCTION jobqueue._scope_key(p_kind text, p_name text, p_id bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.hashtextextended(
        'jobqueue.capacity' || E'\x1f' || p_kind || E'\x1f' || p_name || E'\x1f' || p_id::text, 0)
$$;

-- The vehicles of these jobs that a claim may take now, locked in the jobs' order (SKIP
-- LOCKED), at most p_max of them, past the ones the claim holds already. Each is looked up on
-- its own through procrastinate's lock index (the LIMIT keeps it from being planned as a
-- join): as one join planned while the statistics still described a nearly empty queue, the
-- lookup walked every waiting vehicle, and a worker keeps its plans for the session.
CREATE OR REPLACE FUNCTION jobqueue._lock_vehicles(
    p_job_ids bigint[], p_held bigint[], p_max integer
) RETURNS TABLE (vehicle_id bigint, ord bigint)
LANGUAGE sql VOLATILE
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
AS $$
    SELECT v.id, c.ord
    FROM unnest(p_job_ids) WITH ORDINALITY AS c (job_id, ord)
    CROSS JOIN LATERAL (
        SELECT v.id FROM procrastinate.procrastinate_jobs AS v
        WHERE v.queueing_lock = 'jobqueue:' || c.job_id AND v.status = 'todo'
          AND (v.scheduled_at IS NULL OR v.scheduled_at <= now())
          AND v.id <> ALL (p_held)
        LIMIT 1
        FOR UPDATE OF v SKIP LOCKED
    ) AS v
    ORDER BY c.ord
    LIMIT p_max
$$;

-- The fair claim. Candidates come from the flows that may start a job (not paused, below
-- their caps), the most urgent first (head priority, then least served): from each, its
-- jobs in claim order, a little over its share of the claim. They are ordered by priority,
-- then by served + rank / weight; under caps, cut to the room left under type, start and
-- queue caps; and their vehicles are locked with SKIP LOCKED, as many as asked. Other tasks'
-- vehicles that the FIFO walk would take now (the maintenance ticks) come first. A claim
-- left short while jobs wait (a concurrent claim holds some vehicles, or a flow had fewer
-- jobs than its share) is topped up: without caps by the FIFO walk, under caps by a second
-- round that takes each flow's jobs up to its room, so a worker never idles while jobs wait.
CREATE OR REPLACE FUNCTION jobqueue._fair_vehicles(
    p_queues text[], p_max_count integer, p_rules boolean,
    OUT vehicle_ids bigint[], OUT shares jsonb
)
LANGUAGE plpgsql VOLATILE
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET jit = off
AS $$
DECLARE
    v_lag constant double precision := 10;
    v_fq text[];
    v_fo bigint[];
    v_fp integer[];
    v_fh bigint[];
    v_jobs bigint[];
    v_type text[];
    v_queue text[];
    v_org bigint[];
    v_left integer;
    v_round integer := 1;
    v_full boolean;
    v_one text;
    v_more bigint[];
    v_cq text[];
    v_co bigint[];
    v_cs double precision[];
    v_cw integer[];
BEGIN
    -- Every (queue, organization) with runnable jobs, with the first of its jobs in claim
    -- order: a loose scan of job_runnable_idx, one probe per organization. (Every query of
    -- that index repeats its "organization_id > 0", which makes it usable.)
    IF p_queues IS NULL THEN
        WITH RECURSIVE f AS (
            (SELECT j.queue, j.organization_id, j.priority, j.id FROM jobqueue.job AS j
             WHERE j.status IN ('queued', 'retrying') AND j.organization_id > 0
             ORDER BY j.queue, j.organization_id, j.priority DESC, j.id LIMIT 1)
            UNION ALL
            SELECT n.queue, n.organization_id, n.priority, n.id
            FROM f CROSS JOIN LATERAL (
                SELECT j.queue, j.organization_id, j.priority, j.id FROM jobqueue.job AS j
                WHERE j.status IN ('queued', 'retrying') AND j.organization_id > 0
                  AND (j.queue, j.organization_id) > (f.queue, f.organization_id)
                ORDER BY j.queue, j.organization_id, j.priority DESC, j.id LIMIT 1
            ) AS n
        )
        SELECT array_agg(f.queue), array_agg(f.organization_id), array_agg(f.priority),
               array_agg(f.id)
        INTO v_fq, v_fo, v_fp, v_fh
        FROM f;
    ELSE
        FOREACH v_one IN ARRAY p_queues LOOP
            WITH RECURSIVE f AS (
                (SELECT j.queue, j.organization_id, j.priority, j.id FROM jobqueue.job AS j
                 WHERE j.queue = v_one AND j.status IN ('queued', 'retrying')
                   AND j.organization_id > 0
                 ORDER BY j.queue, j.organization_id, j.priority DESC, j.id LIMIT 1)
                UNION ALL
                SELECT n.queue, n.organization_id, n.priority, n.id
                FROM f CROSS JOIN LATERAL (
                    -- Not "queue = ..." as well: with it the scan starts at the queue's
                    -- first entry.
                    SELECT j.queue, j.organization_id, j.priority, j.id FROM jobqueue.job AS j
                    WHERE j.status IN ('queued', 'retrying') AND j.organization_id > 0
                      AND (j.queue, j.organization_id) > (v_one, f.organization_id)
                    ORDER BY j.queue, j.organization_id, j.priority DESC, j.id LIMIT 1
                ) AS n
                WHERE n.queue = v_one
            )
            SELECT v_fq || array_agg(f.queue), v_fo || array_agg(f.organization_id),
                   v_fp || array_agg(f.priority), v_fh || array_agg(f.id)
            INTO v_fq, v_fo, v_fp, v_fh
            FROM f;
        END LOOP;
    END IF;

    IF p_rules AND v_fq IS NOT NULL THEN
        -- Every capped scope this claim may start a job in, locked in one order; the counts
        -- read below are then the ones the previous claim of each scope committed.
        PERFORM pg_advisory_xact_lock(k.key)
        FROM (
            SELECT jobqueue._scope_key('queue_org', f.queue, f.org) AS key
            FROM unnest(v_fq, v_fo) AS f (queue, org)
            LEFT JOIN jobqueue.queue_policy AS qp ON qp.queue = f.queue
            LEFT JOIN jobqueue.organization_policy AS op
                ON op.queue = f.queue AND op.organization_id = f.org
            WHERE coalesce(op.concurrency, qp.organization_concurrency) IS NOT NULL
            UNION
            SELECT jobqueue._scope_key('queue', qp.queue, 0)
            FROM jobqueue.queue_policy AS qp
            WHERE qp.concurrency IS NOT NULL AND qp.queue = ANY (v_fq)
            UNION
            SELECT jobqueue._scope_key('type', tp.job_type, 0)
            FROM jobqueue.job_type_policy AS tp WHERE tp.concurrency IS NOT NULL
            UNION
            SELECT jobqueue._scope_key('start', tp.job_type, o.org)
            FROM jobqueue.job_type_policy AS tp, unnest(v_fo) AS o (org)
            WHERE tp.start_limit IS NOT NULL
        ) AS k
        ORDER BY k.key;
    END IF;

    -- Vehicles of other tasks that the FIFO walk would take now (the maintenance ticks jump
    -- every queue), so that they never wait behind organizations' jobs.
    SELECT array_agg(o.id ORDER BY o.priority DESC, o.id) INTO vehicle_ids
    FROM (
        SELECT v.id, v.priority FROM procrastinate.procrastinate_jobs AS v
        WHERE v.id IN (
                SELECT t.id FROM procrastinate.procrastinate_jobs AS t
                WHERE t.status = 'todo'
                  AND (p_queues IS NULL OR t.queue_name = ANY (p_queues))
                  AND (t.scheduled_at IS NULL OR t.scheduled_at <= now())
                ORDER BY t.priority DESC, t.id
                LIMIT p_max_count)
          AND v.status = 'todo' AND v.task_name <> 'jobqueue.run'
          AND (v.lock IS NULL OR NOT EXISTS (
              SELECT FROM procrastinate.procrastinate_jobs AS other
              WHERE other.lock = v.lock
                AND (other.status = 'doing'
                     OR (other.status = 'todo'
                         AND (other.priority > v.priority
                              OR (other.priority = v.priority AND other.id < v.id))))))
        FOR UPDATE OF v SKIP LOCKED
    ) AS o;
    vehicle_ids := coalesce(vehicle_ids, '{}');
    v_left := p_max_count - cardinality(vehicle_ids);

    WHILE v_fq IS NOT NULL AND v_left > 0 AND v_round <= 2 LOOP
        -- Candidates in claim order. Round 1 takes a little over each flow's share; round 2
        -- (under caps, after a short round 1) each flow's jobs up to its room.
        WITH flow AS (
            SELECT f.queue, f.org, f.priority AS head_priority, f.head,
                   coalesce(op.weight, 1) AS weight, coalesce(u.served, 0) AS served,
                   coalesce(op.concurrency, qp.organization_concurrency)
                       - coalesce(u.running, 0) AS room
            FROM unnest(v_fq, v_fo, v_fp, v_fh) AS f (queue, org, priority, head)
            LEFT JOIN jobqueue.queue_policy AS qp ON qp.queue = f.queue
            LEFT JOIN jobqueue.organization_policy AS op
                ON op.queue = f.queue AND op.organization_id = f.org
            LEFT JOIN jobqueue.queue_usage AS u
                ON u.queue = f.queue AND u.organization_id = f.org
            WHERE NOT coalesce(qp.paused, false) AND NOT coalesce(op.paused, false)
              AND (qp.concurrency IS NULL OR qp.running < qp.concurrency)
        ), level AS (
            -- No flow is owed more than LAG jobs of catch-up by the others.
            SELECT flow.*, greatest(flow.served, max(flow.served) OVER () - v_lag) AS share
            FROM flow
        ), chosen AS (
            SELECT level.*,
                   least(coalesce(level.room, v_left), v_left,
                         CASE WHEN v_round = 1
                              THEN 1 + (v_left + count(*) OVER () - 1) / count(*) OVER () END)
                       AS take
            FROM (SELECT * FROM level WHERE level.room IS NULL OR level.room > 0
                  ORDER BY level.head_priority DESC, level.share, level.head
                  LIMIT v_left) AS level
        ), candidate AS (
            SELECT j.id, j.priority, j.job_type, c.queue, c.org,
                   c.share + (row_number() OVER w)::float8 / c.weight AS key,
                   -- the flow gave all it was asked for, and may have more
                   count(*) OVER (PARTITION BY c.queue, c.org) = c.take
                       AND c.take < coalesce(c.room, v_left) AS full
            FROM chosen AS c
            CROSS JOIN LATERAL (
                SELECT j.id, j.priority, j.job_type FROM jobqueue.job AS j
                WHERE j.queue = c.queue AND j.organization_id = c.org
                  AND j.status IN ('queued', 'retrying') AND j.organization_id > 0
                  AND CASE j.status WHEN 'queued' THEN j.run_at ELSE j.next_retry_at END
                      <= now()
                ORDER BY j.queue, j.organization_id, j.priority DESC, j.id
                LIMIT c.take
            ) AS j
            WINDOW w AS (PARTITION BY c.queue, c.org ORDER BY j.priority DESC, j.id)
        )
        SELECT array_agg(c.id), array_agg(c.job_type), array_agg(c.queue), array_agg(c.org),
               bool_or(c.full),
               (SELECT array_agg(h.queue) FROM chosen AS h),
               (SELECT array_agg(h.org) FROM chosen AS h),
               (SELECT array_agg(h.share) FROM chosen AS h),
               (SELECT array_agg(h.weight) FROM chosen AS h)
        INTO v_jobs, v_type, v_queue, v_org, v_full, v_cq, v_co, v_cs, v_cw
        FROM (SELECT * FROM candidate
              ORDER BY candidate.priority DESC, candidate.key, candidate.id) AS c;

        IF NOT p_rules THEN
            -- The candidates' vehicles, locked in claim order, and the round robin moved on
            -- for the flows they belong to: no count is kept without caps, so no statement
            -- but another claim's (which skips a row this one holds) locks these rows.
            WITH locked AS (
                SELECT l.vehicle_id AS id, c.queue, c.org, l.ord
                FROM jobqueue._lock_vehicles(v_jobs, vehicle_ids, v_left) AS l
                JOIN unnest(v_queue, v_org) WITH ORDINALITY AS c (queue, org, ord)
                    ON c.ord = l.ord
            ), served AS (
                SELECT h.queue, h.org, h.share + count(*)::float8 / h.weight AS served
                FROM locked AS l
                JOIN unnest(v_cq, v_co, v_cs, v_cw) AS h (queue, org, share, weight)
                    ON h.queue = l.queue AND h.org = l.org
                GROUP BY h.queue, h.org, h.share, h.weight
            ), inserted AS (
                INSERT INTO jobqueue.queue_usage AS u (queue, organization_id, served)
                SELECT s.queue, s.org, s.served FROM served AS s
                ORDER BY s.queue, s.org
                ON CONFLICT ON CONSTRAINT queue_usage_pkey DO NOTHING
            ), updated AS (
                UPDATE jobqueue.queue_usage AS u SET served = s.served
                FROM served AS s
                WHERE u.queue = s.queue AND u.organization_id = s.org AND u.served < s.served
                  AND pg_try_advisory_xact_lock(jobqueue._scope_key('served', s.queue, s.org))
            )
            SELECT array_agg(l.id ORDER BY l.ord) INTO v_more FROM locked AS l;
            vehicle_ids := vehicle_ids || coalesce(v_more, '{}');
            v_left := p_max_count - cardinality(vehicle_ids);
            EXIT;
        END IF;
        -- Under caps the service is booked after the jobs started (_record_service): the
        -- counts of capped flows are locked first, by the lifecycle trigger, in key order.
        SELECT jsonb_agg(jsonb_build_object('queue', h.queue, 'org', h.org, 'share', h.share,
                                            'weight', h.weight))
        INTO shares
        FROM unnest(v_cq, v_co, v_cs, v_cw) AS h (queue, org, share, weight);

        IF p_rules AND v_jobs IS NOT NULL THEN
            -- Cut to the room left under start limits (per type and organization), type caps
            -- and queue caps, in that order and in claim order; a job a later cut drops does
            -- not give its room back to an earlier one, so a claim may start fewer, never more.
            WITH c AS (
                SELECT c.id, c.job_type, c.queue, c.org, c.ord, tp.start_limit, tp.start_period
                FROM unnest(v_jobs, v_type, v_queue, v_org)
                    WITH ORDINALITY AS c (id, job_type, queue, org, ord)
                LEFT JOIN jobqueue.job_type_policy AS tp ON tp.job_type = c.job_type
            ), started AS (
                SELECT c.* FROM (
                    SELECT c.*, row_number() OVER (PARTITION BY c.job_type, c.org
                                                   ORDER BY c.ord) AS n_start
                    FROM c
                ) AS c
                LEFT JOIN jobqueue.start_counter AS sc
                    ON sc.job_type = c.job_type AND sc.organization_id = c.org
                   AND sc.window_start = jobqueue._rate_window_start(c.start_period)
                WHERE c.start_limit IS NULL OR c.n_start <= c.start_limit - coalesce(sc.count, 0)
            ), typed AS (
                SELECT c.* FROM (
                    SELECT c.*, row_number() OVER (PARTITION BY c.job_type ORDER BY c.ord)
                               AS n_type
                    FROM started AS c
                ) AS c
                LEFT JOIN jobqueue.job_type_policy AS tp ON tp.job_type = c.job_type
                WHERE tp.concurrency IS NULL OR c.n_type <= tp.concurrency - tp.running
            ), queued AS (
                SELECT c.* FROM (
                    SELECT c.*, row_number() OVER (PARTITION BY c.queue ORDER BY c.ord)
                               AS n_queue
                    FROM typed AS c
                ) AS c
                LEFT JOIN jobqueue.queue_policy AS qp ON qp.queue = c.queue
                WHERE qp.concurrency IS NULL OR c.n_queue <= qp.concurrency - qp.running
            )
            SELECT array_agg(q.id ORDER BY q.ord) INTO v_jobs FROM queued AS q;
        END IF;

        IF v_jobs IS NOT NULL THEN
            vehicle_ids := vehicle_ids || ARRAY(
                SELECT l.vehicle_id
                FROM jobqueue._lock_vehicles(v_jobs, vehicle_ids, v_left) AS l
                ORDER BY l.ord);
            v_left := p_max_count - cardinality(vehicle_ids);
        END IF;
        -- Under caps, a short claim gets a second round; without, the FIFO walk below.
        EXIT WHEN NOT coalesce(v_full, false);
        v_round := v_round + 1;
    END LOOP;

    IF v_left > 0 AND NOT p_rules THEN
        -- _claimable_vehicles' walk, past the vehicles this claim holds already.
        vehicle_ids := vehicle_ids || ARRAY(
            SELECT v.id
            FROM procrastinate.procrastinate_jobs AS v
            WHERE v.status = 'todo'
              AND (p_queues IS NULL OR v.queue_name = ANY (p_queues))
              AND (v.scheduled_at IS NULL OR v.scheduled_at <= now())
              AND v.id <> ALL (vehicle_ids)
              AND (v.lock IS NULL OR NOT EXISTS (
                  SELECT FROM procrastinate.procrastinate_jobs AS other
                  WHERE other.lock = v.lock
                    AND (other.status = 'doing'
                         OR (other.status = 'todo'
                             AND (other.priority > v.priority
                                  OR (other.priority = v.priority AND other.id < v.id))))))
            ORDER BY v.priority DESC, v.id
            LIMIT v_left
            FOR UPDATE OF v SKIP LOCKED);
    END IF;
    IF cardinality(vehicle_ids) = 0 THEN
        vehicle_ids := NULL;
    END IF;
END
$$;

-- The vehicles a claim of up to p_max_count takes. One organization and no pause or cap:
-- the FIFO walk of _claimable_vehicles, whose order is then also fair. Otherwise the fair
-- claim, whose shares (the competing flows) _record_service books once the jobs started.
-- Telling the two apart costs a lock, a look at the (small) policy tables and two probes of
-- job_runnable_idx per queue: the organizations of the last (queue, organization) entry and
-- of the one before it.
CREATE OR REPLACE FUNCTION jobqueue._choose_vehicles(
    p_queues character varying[], p_max_count integer,
    OUT vehicle_ids bigint[], OUT shares jsonb
)
LANGUAGE plpgsql VOLATILE
SET search_path = jobqueue, procrastinate, pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
-- Only job_runnable_idx gives the order these probes ask for; without sorts the planner
-- cannot pick an index by organization and filter its history instead. Nested calls inherit
-- this, and fetch_vehicles' sequential and bitmap scans off (each setting costs every call).
SET enable_sort = off
-- The policy tables are scanned, priced as disabled scans: over the JIT threshold.
SET jit = off
AS $$
DECLARE
    v_queues text[] := p_queues::text[];
    v_rules boolean;
    v_fair boolean := false;
    v_queue text;
    v_org bigint;
    v_next_queue text;
    v_next_org bigint;
BEGIN
    -- A cap set while this claim runs waits for it (capacity.sql), so the claim's starts are
    -- in the recount or under the cap it reads.
    LOCK TABLE jobqueue.queue_policy IN ROW SHARE MODE;
    -- _capacity_rules, inlined: this runs on every claim.
    v_rules := EXISTS (SELECT FROM jobqueue.queue_policy AS p
                       WHERE (v_queues IS NULL OR p.queue = ANY (v_queues))
                         AND (p.paused OR p.concurrency IS NOT NULL
                              OR p.organization_concurrency IS NOT NULL))
            OR EXISTS (SELECT FROM jobqueue.organization_policy AS p
                       WHERE (v_queues IS NULL OR p.queue = ANY (v_queues))
                         AND (p.paused OR p.concurrency IS NOT NULL))
            OR EXISTS (SELECT FROM jobqueue.job_type_policy);
    -- The probes read job_runnable_idx backwards: a queue's last entries are its newest
    -- jobs, still waiting, where its first are those claims just took, whose entries stay
    -- in the index until vacuum and would be stepped over on every claim of a drain.
    IF NOT v_rules AND v_queues IS NULL THEN
        SELECT j.queue, j.organization_id INTO v_queue, v_org FROM jobqueue.job AS j
        WHERE j.status IN ('queued', 'retrying') AND j.organization_id > 0
        ORDER BY j.queue DESC, j.organization_id DESC, j.priority, j.id DESC LIMIT 1;
        WHILE v_queue IS NOT NULL AND NOT v_fair LOOP
            SELECT j.queue, j.organization_id INTO v_next_queue, v_next_org
            FROM jobqueue.job AS j
            WHERE j.status IN ('queued', 'retrying') AND j.organization_id > 0
              AND (j.queue, j.organization_id) < (v_queue, v_org)
            ORDER BY j.queue DESC, j.organization_id DESC, j.priority, j.id DESC LIMIT 1;
            EXIT WHEN NOT FOUND;
            v_fair := v_next_org <> v_org;
            v_queue := v_next_queue;
        END LOOP;
    ELSIF NOT v_rules THEN
        FOREACH v_next_queue IN ARRAY v_queues LOOP
            SELECT j.organization_id INTO v_next_org FROM jobqueue.job AS j
            WHERE j.queue = v_next_queue AND j.status IN ('queued', 'retrying')
              AND j.organization_id > 0
            ORDER BY j.queue DESC, j.organization_id DESC, j.priority, j.id DESC LIMIT 1;
            CONTINUE WHEN NOT FOUND;
            v_fair := v_next_org <> coalesce(v_org, v_next_org);
            EXIT WHEN v_fair;
            v_org := v_next_org;
            -- Not "queue = ..." as well: with it the scan starts at the queue's last entry.
            SELECT j.queue INTO v_queue FROM jobqueue.job AS j
            WHERE j.status IN ('queued', 'retrying') AND j.organization_id > 0
              AND (j.queue, j.organization_id) < (v_next_queue, v_next_org)
            ORDER BY j.queue DESC, j.organization_id DESC, j.priority, j.id DESC LIMIT 1;
            v_fair := v_queue IS NOT DISTINCT FROM v_next_queue;
            EXIT WHEN v_fair;
        END LOOP;
    END IF;
    IF v_rules OR v_fair THEN
        SELECT f.vehicle_ids, f.shares INTO vehicle_ids, shares
        FROM jobqueue._fair_vehicles(v_queues, p_max_count, v_rules) AS f;
    ELSE
        vehicle_ids := jobqueue._claimable_vehicles(p_queues, p_max_count);
    END IF;
END
$$;

-- After a fair claim started its jobs: each competing flow that got some moves on by
-- started / weight from its share. A row another claim is updating is left as it is (the
-- round robin is approximate, a count never is), so claims never wait on each other here;
-- rows of capped flows are this claim's already (the lifecycle trigger counted its starts).
CREATE OR REPLACE FUNCTION jobqueue._record_service(p_shares jsonb, p_jobs bigint[])
RETURNS void
-- plpgsql keeps the statement's plan for the session; a sql function plans it on every call.
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
BEGIN
    WITH s AS (
        SELECT s.queue, s.org, s.share + count(*)::float8 / s.weight AS served
        FROM jsonb_to_recordset(p_shares) AS s (queue text, org bigint, share float8,
                                                weight integer)
        JOIN jobqueue.job AS j
            ON j.id = ANY (p_jobs) AND j.queue = s.queue AND j.organization_id = s.org
           AND j.status = 'running'
        GROUP BY s.queue, s.org, s.share, s.weight
    ), inserted AS (
        INSERT INTO jobqueue.queue_usage AS u (queue, organization_id, served)
        SELECT s.queue, s.org, s.served FROM s
        ORDER BY s.queue, s.org
        ON CONFLICT ON CONSTRAINT queue_usage_pkey DO NOTHING
    )
    UPDATE jobqueue.queue_usage AS u SET served = s.served
    FROM s
    WHERE u.queue = s.queue AND u.organization_id = s.org AND u.served < s.served
      AND pg_try_advisory_xact_lock(jobqueue._scope_key('served', s.queue, s.org));
END
$$;

-- The counts after a statement started (queued|retrying -> running) and stopped (running ->
-- anything) these jobs: running jobs per capped (queue, organization), capped queue and
-- capped type, starts per start-limited (type, organization) and window. Called by the
-- lifecycle trigger for every statement that starts or ends jobs, so every path counts:
-- claims, procrastinate's own fetch, finishes, the rescue; without any cap it only takes the
-- lock below and finds nothing to keep. A slot freed under a cap that was full wakes the queue's
-- workers (procrastinate's job_inserted), so a job waiting for it starts at once.
CREATE OR REPLACE FUNCTION jobqueue._track_running(p_started bigint[], p_stopped bigint[])
RETURNS void
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    v_wake text[];
BEGIN
    -- Taken before the caps are read: a cap being set waits for this transaction to end, and
    -- its recount then sees these changes (capacity.sql).
    LOCK TABLE jobqueue.queue_policy IN ROW SHARE MODE;
    -- Whether any count is kept: a cap on a queue or on organizations in a queue, or any
    -- type policy. It runs for every statement that starts or ends jobs.
    IF NOT (EXISTS (SELECT FROM jobqueue.queue_policy AS p
                    WHERE p.concurrency IS NOT NULL OR p.organization_concurrency IS NOT NULL)
            OR EXISTS (SELECT FROM jobqueue.organization_policy AS p
                       WHERE p.concurrency IS NOT NULL)
            OR EXISTS (SELECT FROM jobqueue.job_type_policy)) THEN
        RETURN;
    END IF;
    WITH moved AS (
        SELECT j.queue, j.organization_id AS org, j.job_type,
               sum(m.delta)::integer AS delta, count(*) FILTER (WHERE m.delta > 0) AS starts
        FROM (SELECT unnest(p_started) AS id, 1 AS delta
              UNION ALL SELECT unnest(p_stopped), -1) AS m
        JOIN jobqueue.job AS j ON j.id = m.id
        GROUP BY j.queue, j.organization_id, j.job_type
    ), capped_flows AS (
        SELECT m.queue, m.org, sum(m.delta)::integer AS delta,
               coalesce(op.concurrency, qp.organization_concurrency) AS cap
        FROM moved AS m
        LEFT JOIN jobqueue.queue_policy AS qp ON qp.queue = m.queue
        LEFT JOIN jobqueue.organization_policy AS op
            ON op.queue = m.queue AND op.organization_id = m.org
        WHERE coalesce(op.concurrency, qp.organization_concurrency) IS NOT NULL
        GROUP BY m.queue, m.org, op.concurrency, qp.organization_concurrency
        HAVING sum(m.delta) <> 0
    ), flows AS (
        INSERT INTO jobqueue.queue_usage AS u (queue, organization_id, running)
        SELECT f.queue, f.org, greatest(f.delta, 0) FROM capped_flows AS f
        ORDER BY f.queue, f.org
        ON CONFLICT ON CONSTRAINT queue_usage_pkey
            DO UPDATE SET running = greatest(u.running + (
                SELECT f.delta FROM capped_flows AS f
                WHERE f.queue = u.queue AND f.org = u.organization_id), 0)
        RETURNING u.queue, u.organization_id, u.running
    ), queue_deltas AS (
        SELECT m.queue, sum(m.delta)::integer AS delta FROM moved AS m
        GROUP BY m.queue HAVING sum(m.delta) <> 0
    ), queues AS (
        -- An upsert only to take the rows in key order (two statements updating the same
        -- queues must not lock them in crossing orders); the rows exist, so it never inserts.
        INSERT INTO jobqueue.queue_policy AS qp (queue, running)
        SELECT d.queue, 0 FROM queue_deltas AS d
        JOIN jobqueue.queue_policy AS p ON p.queue = d.queue AND p.concurrency IS NOT NULL
        ORDER BY d.queue
        ON CONFLICT ON CONSTRAINT queue_policy_pkey
            DO UPDATE SET running = greatest(qp.running + (
                SELECT d.delta FROM queue_deltas AS d WHERE d.queue = qp.queue), 0)
        RETURNING qp.queue, qp.running, qp.concurrency
    ), type_deltas AS (
        SELECT m.job_type, sum(m.delta)::integer AS delta FROM moved AS m
        GROUP BY m.job_type HAVING sum(m.delta) <> 0
    ), types AS (
        INSERT INTO jobqueue.job_type_policy AS tp (job_type, running)
        SELECT d.job_type, 0 FROM type_deltas AS d
        JOIN jobqueue.job_type_policy AS p ON p.job_type = d.job_type AND p.concurrency IS NOT NULL
        ORDER BY d.job_type
        ON CONFLICT ON CONSTRAINT job_type_policy_pkey
            DO UPDATE SET running = greatest(tp.running + (
                SELECT d.delta FROM type_deltas AS d WHERE d.job_type = tp.job_type), 0)
        RETURNING tp.job_type, tp.running, tp.concurrency
    ), windows AS (
        INSERT INTO jobqueue.start_counter AS c (job_type, organization_id, window_start, count)
        SELECT m.job_type, m.org, jobqueue._rate_window_start(tp.start_period), sum(m.starts)
        FROM moved AS m
        JOIN jobqueue.job_type_policy AS tp ON tp.job_type = m.job_type
        WHERE tp.start_limit IS NOT NULL AND m.starts > 0
        GROUP BY m.job_type, m.org, tp.start_period
        ORDER BY m.job_type, m.org
        ON CONFLICT ON CONSTRAINT start_counter_pkey
            DO UPDATE SET count = c.count + excluded.count
    )
    -- Queues with a slot freed under a cap that was full before this statement.
    SELECT array_agg(DISTINCT w.queue) INTO v_wake
    FROM (
        SELECT f.queue FROM flows AS f
        JOIN capped_flows AS c ON c.queue = f.queue AND c.org = f.organization_id
        WHERE c.delta < 0 AND f.running - c.delta >= c.cap
        UNION ALL
        SELECT q.queue FROM queues AS q JOIN queue_deltas AS d ON d.queue = q.queue
        WHERE d.delta < 0 AND q.running - d.delta >= q.concurrency
        UNION ALL
        SELECT m.queue FROM types AS t
        JOIN type_deltas AS d ON d.job_type = t.job_type
        JOIN moved AS m ON m.job_type = t.job_type
        WHERE d.delta < 0 AND t.running - d.delta >= t.concurrency
    ) AS w;
    IF v_wake IS NOT NULL THEN
        -- The payload procrastinate's worker reads: only its type.
        PERFORM pg_notify('procrastinate_queue_v1#' || q, '{"type": "job_inserted"}'),
                pg_notify('procrastinate_any_queue_v1', '{"type": "job_inserted"}')
        FROM unnest(v_wake) AS q;
    END IF;
END
$$;

-- Every running count, from the jobs themselves: capacity.sql calls it when a cap changes,
-- holding queue_policy in EXCLUSIVE mode, so no start or end is in flight meanwhile. Running
-- jobs are read one organization at a time through job_org_status_id_idx.
CREATE OR REPLACE FUNCTION jobqueue._recount_running() RETURNS void
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
DECLARE
    v_queue text[];
    v_org bigint[];
    v_type text[];
    v_running integer[];
BEGIN
    SELECT array_agg(r.queue), array_agg(r.organization_id), array_agg(r.job_type),
           array_agg(r.running)
    INTO v_queue, v_org, v_type, v_running
    FROM (
        SELECT j.queue, j.organization_id, j.job_type, count(*)::integer AS running
        FROM jobqueue.organization AS o
        CROSS JOIN LATERAL (
            SELECT l.queue, l.organization_id, l.job_type FROM jobqueue.job AS l
            WHERE l.organization_id = o.id AND l.status = 'running'
        ) AS j
        GROUP BY j.queue, j.organization_id, j.job_type
    ) AS r;

    WITH r AS (
        SELECT * FROM unnest(v_queue, v_org, v_type, v_running)
            AS r (queue, organization_id, job_type, running)
    ), by_queue AS (
        SELECT p.queue, coalesce(sum(r.running), 0)::integer AS running
        FROM jobqueue.queue_policy AS p LEFT JOIN r ON r.queue = p.queue
        GROUP BY p.queue
    ), by_type AS (
        SELECT p.job_type, coalesce(sum(r.running), 0)::integer AS running
        FROM jobqueue.job_type_policy AS p LEFT JOIN r ON r.job_type = p.job_type
        GROUP BY p.job_type
    ), by_flow AS (
        SELECT r.queue, r.organization_id, sum(r.running)::integer AS running
        FROM r GROUP BY r.queue, r.organization_id
    ), queues AS (
        UPDATE jobqueue.queue_policy AS p SET running = b.running
        FROM by_queue AS b WHERE p.queue = b.queue AND p.running <> b.running
    ), types AS (
        UPDATE jobqueue.job_type_policy AS p SET running = b.running
        FROM by_type AS b WHERE p.job_type = b.job_type AND p.running <> b.running
    ), flows AS (
        INSERT INTO jobqueue.queue_usage AS u (queue, organization_id, running)
        SELECT b.queue, b.organization_id, b.running FROM by_flow AS b
        ORDER BY b.queue, b.organization_id
        ON CONFLICT ON CONSTRAINT queue_usage_pkey DO UPDATE SET running = excluded.running
        WHERE u.running <> excluded.running
    )
    UPDATE jobqueue.queue_usage AS u SET running = 0
    WHERE u.running <> 0
      AND NOT EXISTS (SELECT FROM by_flow AS b
                      WHERE b.queue = u.queue AND b.organization_id = u.organization_id);
END
$$;

-- Whether procrastinate's own fetch may start this job now: neither its queue nor its
-- organization there is paused, and every cap and start limit over it has room. The scopes'
-- locks are held until the fetch commits, as a claim holds them.
CREATE OR REPLACE FUNCTION jobqueue._admits_start(
    p_queue text, p_organization_id bigint, p_job_type text
) RETURNS boolean
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    v_queue jobqueue.queue_policy;
    v_org jobqueue.organization_policy;
    v_type jobqueue.job_type_policy;
    v_running integer;
    v_started integer;
BEGIN
    LOCK TABLE jobqueue.queue_policy IN ROW SHARE MODE;
    IF NOT jobqueue._capacity_rules(ARRAY[p_queue]) THEN
        RETURN true;
    END IF;
    SELECT * INTO v_queue FROM jobqueue.queue_policy WHERE queue = p_queue;
    SELECT * INTO v_org FROM jobqueue.organization_policy
    WHERE queue = p_queue AND organization_id = p_organization_id;
    SELECT * INTO v_type FROM jobqueue.job_type_policy WHERE job_type = p_job_type;
    IF coalesce(v_queue.paused, false) OR coalesce(v_org.paused, false) THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(k.key)
    FROM (VALUES
        (CASE WHEN coalesce(v_org.concurrency, v_queue.organization_concurrency) IS NOT NULL
              THEN jobqueue._scope_key('queue_org', p_queue, p_organization_id) END),
        (CASE WHEN v_queue.concurrency IS NOT NULL
              THEN jobqueue._scope_key('queue', p_queue, 0) END),
        (CASE WHEN v_type.concurrency IS NOT NULL
              THEN jobqueue._scope_key('type', p_job_type, 0) END),
        (CASE WHEN v_type.start_limit IS NOT NULL
              THEN jobqueue._scope_key('start', p_job_type, p_organization_id) END)
    ) AS k (key)
    WHERE k.key IS NOT NULL
    ORDER BY k.key;
    -- The counts as the previous holders of these locks left them.
    SELECT * INTO v_queue FROM jobqueue.queue_policy WHERE queue = p_queue;
    SELECT * INTO v_type FROM jobqueue.job_type_policy WHERE job_type = p_job_type;
    SELECT u.running INTO v_running FROM jobqueue.queue_usage AS u
    WHERE u.queue = p_queue AND u.organization_id = p_organization_id;
    SELECT c.count INTO v_started FROM jobqueue.start_counter AS c
    WHERE c.job_type = p_job_type AND c.organization_id = p_organization_id
      AND c.window_start = jobqueue._rate_window_start(v_type.start_period);
    RETURN coalesce(coalesce(v_running, 0)
                    < coalesce(v_org.concurrency, v_queue.organization_concurrency), true)
       AND coalesce(v_queue.running < v_queue.concurrency, true)
       AND coalesce(v_type.running < v_type.concurrency, true)
       AND coalesce(coalesce(v_started, 0) < v_type.start_limit, true);
END
$$;
