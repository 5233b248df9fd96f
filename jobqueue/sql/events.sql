-- events.sql: the event log, its wake-up notification and the readers of both.
--
-- Owns:      the event log's one writer, NOTIFY for new events, the replay query of the SSE
--            feed, and the feed's read of every organization's new events.
-- Storage:   one jobqueue.event_batch row per statement and organization (at most 1,024
--            events): a claim or finish of ten jobs writes one row, not ten (migration 0013).
--            Event i (from 1) of a row has the id first_id + i - 1; first_id is a block of
--            1,024 ids from event_batch_seq, so ids stay unique, follow time, and keep their
--            meaning for Last-Event-ID. The view jobqueue.event shows one row per event.
-- Public:    events_since(actor, after_id, organization, job_id, max_rows, until_id,
--                         transactions, transactions_after)  -- replay, in id order
--            event_feed(after_id, watching, watching_from, max_rows)  -- the web process's read
--                        of every committed event it has not published yet (see below)
--            transactions_in_progress()  -- what the current snapshot cannot see yet
-- Internal:  _log_events(organization_ids, job_ids, types, data)  -- the one writer
--            _invisible_transactions(snapshot)  -- its in-progress list and those past xmax
--            _tg_event__after_insert  -- pg_notify('jobqueue_events', '') once per statement
-- Channel:   jobqueue_events, with an EMPTY payload: a wake-up, nothing more. Any login that
--            can connect may LISTEN and NOTIFY on any channel, so a notification carries no
--            organization's data and nothing in it is believed: readers read the table. A
--            transaction's notifications with the same payload are delivered once, at commit.
-- Feed:      ids are taken at insert and seen at commit, so a lower id can commit after a
--            higher one, and "id > the last one read" would skip it. event_feed reads the
--            events after the reader's high-water mark, plus those of transactions that were
--            still running at its previous read and have finished since (event_batch.xact_id,
--            against the snapshot's in-progress list and the ids assigned past its xmax, which
--            that list leaves out): every committed event exactly once,
--            however the transactions interleave. It relies on each writer's transaction id
--            being assigned before its event ids are taken (_log_events asks for it first)
--            and on the sequence handing out blocks in order (CACHE 1, the default).
-- Replay:    events_since reads after an id. Read alone, it can miss a lower id committed
--            after the one the client saw; so the SSE feed's resume cursor also names the
--            transactions that were in progress below it (feed_cursor.py), and a resume reads
--            their events at or below it (until_id, transactions, transactions_after) and the
--            events after it, in one snapshot (a REPEATABLE READ transaction).
-- States:    none.
-- Locks:     none.
-- Raises:    JQV03 bad argument, JQA02 forbidden.
-- Events:    this file writes and sends them; lifecycle, worker, bulk, capacity and schedules
--            call _log_events.

-- The one writer of events: the events of a statement, element i of each array one event,
-- in the order given. One row per organization and 1,024 events, whose first_id block of
-- 1,024 ids comes from event_batch_seq (migration 0013).
CREATE OR REPLACE FUNCTION jobqueue._log_events(
    p_organization_ids bigint[], p_job_ids bigint[], p_types text[], p_data jsonb[]
) RETURNS void
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
BEGIN
    IF coalesce(cardinality(p_types), 0) = 0 THEN
        RETURN;
    END IF;
    -- The transaction's id first, then the ids of its events (the feed relies on that order).
    PERFORM pg_current_xact_id();
    -- The usual case, a statement's events of one organization, goes in as it came.
    IF cardinality(p_types) <= 1024 AND p_organization_ids[1] = ALL (p_organization_ids) THEN
        INSERT INTO jobqueue.event_batch (first_id, organization_id, job_ids, types, data)
        VALUES (nextval('jobqueue.event_batch_seq') * 1024, p_organization_ids[1], p_job_ids,
                p_types, p_data);
        RETURN;
    END IF;
    INSERT INTO jobqueue.event_batch (first_id, organization_id, job_ids, types, data)
    SELECT nextval('jobqueue.event_batch_seq') * 1024, g.organization_id, g.job_ids, g.types,
           g.data
    FROM (
        SELECT e.organization_id, min(e.n) AS first_n,
               array_agg(e.job_id ORDER BY e.n) AS job_ids,
               array_agg(e.type ORDER BY e.n) AS types,
               array_agg(e.data ORDER BY e.n) AS data
        FROM (SELECT u.*, (row_number() OVER (PARTITION BY u.organization_id ORDER BY u.n) - 1)
                          / 1024 AS chunk
              FROM unnest(p_organization_ids, p_job_ids, p_types, p_data)
                  WITH ORDINALITY AS u (organization_id, job_id, type, data, n)) AS e
        GROUP BY e.organization_id, e.chunk
        ORDER BY first_n
    ) AS g;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue._tg_event__after_insert() RETURNS trigger
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
BEGIN
    -- One wake-up per statement; PostgreSQL folds a transaction's identical ones into one.
    PERFORM pg_notify('jobqueue_events', '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS tg_event__after_insert ON jobqueue.event_batch;
CREATE TRIGGER tg_event__after_insert
    AFTER INSERT ON jobqueue.event_batch
    FOR EACH STATEMENT EXECUTE FUNCTION jobqueue._tg_event__after_insert();

-- The transactions a snapshot cannot see yet that may hold event ids: its in-progress list,
-- and every transaction id from its xmax up to the next one to be assigned (the list stops
-- below xmax, which is only the newest finished transaction + 1: a transaction that took an
-- id after an older one finished is running, yet not listed). The next id is found by asking
-- each one's status until PostgreSQL answers "in the future"; committed and aborted ones
-- among them are kept too (the snapshot cannot see them either).
CREATE OR REPLACE FUNCTION jobqueue._invisible_transactions(p_snapshot pg_snapshot)
RETURNS bigint[]
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
DECLARE
    v_found bigint[] := ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(p_snapshot) AS x
                              ORDER BY 1);
    v_next bigint := pg_snapshot_xmax(p_snapshot)::text::bigint;
BEGIN
    LOOP
        BEGIN
            PERFORM pg_xact_status(v_next::text::xid8);
        EXCEPTION WHEN invalid_parameter_value THEN  -- "in the future": not assigned yet
            RETURN v_found;
        END;
        v_found := v_found || v_next;
        v_next := v_next + 1;
    END LOOP;
END
$$;

-- The transactions the current snapshot cannot see yet (a resume reads them in its own
-- REPEATABLE READ snapshot, sse.py); ids only, no organization's data.
CREATE OR REPLACE FUNCTION jobqueue.transactions_in_progress() RETURNS bigint[]
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT jobqueue._invisible_transactions(pg_current_snapshot());
$$;

-- Earlier signatures: dropped so calls are not ambiguous (a short-lived sixth argument; the
-- five arguments before until_id and transactions).
DROP FUNCTION IF EXISTS jobqueue.events_since(text, bigint, text, bigint, integer, boolean);
DROP FUNCTION IF EXISTS jobqueue.events_since(text, bigint, text, bigint, integer);

-- Reading by id: a row holds the ids first_id .. first_id + cardinality - 1, and no row
-- holds more than 1,024, so the rows holding ids after X are among those with first_id
-- above X - 1,024 (a range of the primary key); the test on the row's last id drops the
-- ones wholly at or below X, so every row read gives at least one event. until_id and
-- transactions serve a resume (sse.py, feed_cursor.py): the events up to an id already sent
-- that transactions in progress at the time wrote after transactions_after[i] (and after
-- after_id).
CREATE OR REPLACE FUNCTION jobqueue.events_since(
    actor text DEFAULT NULL,
    after_id bigint DEFAULT 0,
    organization text DEFAULT NULL,
    job_id bigint DEFAULT NULL,
    max_rows integer DEFAULT 1000,
    until_id bigint DEFAULT NULL,
    transactions bigint[] DEFAULT NULL,
    transactions_after bigint[] DEFAULT NULL
) RETURNS TABLE (
    id bigint, org_id bigint, org text, job bigint, type text, data jsonb, at timestamptz
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_visible bigint[] := jobqueue._visible_organizations(actor);
    v_org_id bigint;
    v_after bigint := coalesce(after_id, 0);
    v_until bigint := coalesce(until_id, 9223372036854775807);
    v_xacts xid8[];
    v_xacts_after bigint[];
BEGIN
    IF max_rows IS NULL OR max_rows NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'max_rows must be between 1 and 10000' USING ERRCODE = 'JQV03';
    END IF;
    IF cardinality(transactions) > 1000
       OR cardinality(transactions) IS DISTINCT FROM
          coalesce(cardinality(transactions_after), cardinality(transactions)) THEN
        RAISE EXCEPTION 'transactions takes at most 1000 transaction ids, and transactions_after as many ids'
            USING ERRCODE = 'JQV03';
    END IF;
    IF events_since.organization IS NOT NULL THEN
        v_org_id := jobqueue._require_organization(actor, events_since.organization);
    END IF;
    IF transactions IS NOT NULL THEN
        SELECT array_agg(t.x::text::xid8 ORDER BY t.n),
               array_agg(greatest(coalesce(t.a, v_after), v_after) ORDER BY t.n)
        INTO v_xacts, v_xacts_after
        FROM unnest(transactions, coalesce(transactions_after, '{}'::bigint[]))
            WITH ORDINALITY AS t (x, a, n)
        WHERE t.x > 0;
        v_xacts := coalesce(v_xacts, '{}');
    END IF;
    RETURN QUERY
        SELECT b.first_id + u.position - 1, b.organization_id, o.name, u.job_id, u.type,
               u.data, b.created_at
        FROM (SELECT eb.* FROM jobqueue.event_batch AS eb
              WHERE eb.first_id > v_after - 1024 AND eb.first_id <= v_until
                AND eb.first_id + cardinality(eb.types) - 1 > v_after
                AND (v_xacts IS NULL OR eb.xact_id = ANY (v_xacts))
                AND (v_visible IS NULL OR eb.organization_id = ANY (v_visible))
                AND (v_org_id IS NULL OR eb.organization_id = v_org_id)
                AND (events_since.job_id IS NULL OR events_since.job_id = ANY (eb.job_ids))
              ORDER BY eb.first_id
              LIMIT max_rows + 1) AS b
        JOIN jobqueue.organization AS o ON o.id = b.organization_id
        CROSS JOIN LATERAL unnest(b.job_ids, b.types, b.data)
            WITH ORDINALITY AS u (job_id, type, data, position)
        WHERE b.first_id + u.position - 1 > v_after
          AND b.first_id + u.position - 1 <= v_until
          AND (v_xacts IS NULL
               OR b.first_id + u.position - 1 > v_xacts_after[array_position(v_xacts, b.xact_id)])
          AND (events_since.job_id IS NULL OR u.job_id = events_since.job_id)
        ORDER BY b.first_id, u.position
        LIMIT max_rows;
END
$$;

-- What the web process's event hub reads on every wake-up, in one statement (so one
-- snapshot): the events after after_id, and the events at or below it of the transactions it
-- was watching (in progress at its previous read; watching_from[i] is an id below all of
-- watching[i]'s) that have finished since. It answers the events as a JSON array in id
-- order (the late ones first), how many of them are late, and the transactions in progress
-- now, for the next call's watch list. max_rows bounds each of the two parts; a reader given
-- a full page of either calls again.
CREATE OR REPLACE FUNCTION jobqueue.event_feed(
    after_id bigint,
    watching bigint[] DEFAULT '{}',
    watching_from bigint[] DEFAULT '{}',
    max_rows integer DEFAULT 1000
) RETURNS TABLE (events jsonb, late_events integer, in_progress bigint[])
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    -- STABLE: every statement here sees the calling statement's snapshot, this one.
    v_snapshot pg_snapshot := pg_current_snapshot();
    v_finished xid8[];
    v_from bigint;
    v_new jsonb;
    v_late jsonb := '[]';
BEGIN
    IF after_id IS NULL OR max_rows IS NULL OR max_rows NOT BETWEEN 1 AND 10000
       OR cardinality(watching) IS DISTINCT FROM cardinality(watching_from) THEN
        RAISE EXCEPTION 'event_feed needs after_id, max_rows in 1..10000, and a start per watched transaction'
            USING ERRCODE = 'JQV03';
    END IF;
    -- Finished (committed or rolled back) by this snapshot: their rows, if any, are final.
    SELECT array_agg(w.x::text::xid8), min(w.low) INTO v_finished, v_from
    FROM unnest(watching, watching_from) AS w (x, low)
    WHERE pg_visible_in_snapshot(w.x::text::xid8, v_snapshot);

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', r.id, 'org_id', r.organization_id, 'org', o.name, 'job', r.job_id,
               'type', r.type, 'data', r.data, 'at', r.created_at, 'xact', r.xact_id::text::bigint)
               ORDER BY r.id), '[]')
    INTO v_new
    FROM (SELECT b.first_id + u.position - 1 AS id, b.organization_id, u.job_id, u.type,
                 u.data, b.created_at, b.xact_id
          FROM (SELECT eb.* FROM jobqueue.event_batch AS eb
                WHERE eb.first_id > after_id - 1024
                  AND eb.first_id + cardinality(eb.types) - 1 > after_id
                ORDER BY eb.first_id LIMIT max_rows) AS b
          CROSS JOIN LATERAL unnest(b.job_ids, b.types, b.data)
              WITH ORDINALITY AS u (job_id, type, data, position)
          WHERE b.first_id + u.position - 1 > after_id
          ORDER BY b.first_id, u.position LIMIT max_rows) AS r
    LEFT JOIN jobqueue.organization AS o ON o.id = r.organization_id;
    IF v_finished IS NOT NULL THEN
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'id', r.id, 'org_id', r.organization_id, 'org', o.name, 'job', r.job_id,
                   'type', r.type, 'data', r.data, 'at', r.created_at, 'xact', r.xact_id::text::bigint)
                   ORDER BY r.id), '[]')
        INTO v_late
        FROM (SELECT b.first_id + u.position - 1 AS id, b.organization_id, u.job_id, u.type,
                     u.data, b.created_at, b.xact_id
              FROM (SELECT eb.* FROM jobqueue.event_batch AS eb
                    WHERE eb.first_id > v_from - 1024 AND eb.first_id <= after_id
                      AND eb.first_id + cardinality(eb.types) - 1 > v_from
                      AND eb.xact_id = ANY (v_finished)
                    ORDER BY eb.first_id LIMIT max_rows) AS b
              CROSS JOIN LATERAL unnest(b.job_ids, b.types, b.data)
                  WITH ORDINALITY AS u (job_id, type, data, position)
              WHERE b.first_id + u.position - 1 > v_from
                AND b.first_id + u.position - 1 <= after_id
              ORDER BY b.first_id, u.position LIMIT max_rows) AS r
        LEFT JOIN jobqueue.organization AS o ON o.id = r.organization_id;
    END IF;
    RETURN QUERY SELECT v_late || v_new, jsonb_array_length(v_late),
                        jobqueue._invisible_transactions(v_snapshot);
END
$$;

-- \df+ explains each public function with its header line.
COMMENT ON FUNCTION jobqueue.events_since(text, bigint, text, bigint, integer, bigint, bigint[], bigint[]) IS
    'events_since(actor, after_id, organization, job_id, max_rows, until_id, transactions, transactions_after): replay of the event log after an id (up to until_id; only those the given transactions wrote after transactions_after), in id order, limited to what the actor may see.';
COMMENT ON FUNCTION jobqueue.transactions_in_progress() IS
    'transactions_in_progress(): the ids of the transactions the current snapshot cannot see yet (in progress, or assigned after its newest finished one); for resuming the event feed.';
COMMENT ON FUNCTION jobqueue.event_feed(bigint, bigint[], bigint[], integer) IS
    'event_feed(after_id, watching, watching_from, max_rows): every organization''s events after after_id, plus the late ones of watched transactions that have finished, and the transactions in progress now.';
