-- cron.sql: what a schedule's cron expression and time zone may be, checked in the database.
--
-- Owns:      the check of a cron expression's shape and ranges, its nicknames, and the check
--            of a time zone name; so a schedule written from psql is refused at once, with
--            nothing written, exactly as one written through Python or HTTP.
-- Internal:  _cron_expression(cron)       -- the fields to compute ticks with, or JQV13
--            _cron_field(field, text, min, max)  -- the values of one field, or JQV13
--            _check_timezone(timezone)    -- the name, or JQV14
-- Who does what: the database only checks; the workers compute ticks from the checked
--            expression with cronsim (jobqueue/tasks/schedules.py), a library that follows
--            Debian cron, DST included. The accepted syntax is the part both agree on:
--            five fields (minute hour day-of-month month day-of-week), or six with a leading
--            seconds field; '*', numbers, 'a-b' ranges, '/n' steps, ',' lists, JAN-DEC and
--            SUN-SAT (any case), 0 or 7 for Sunday; and the nicknames @yearly, @annually,
--            @monthly, @weekly, @daily, @midnight, @hourly. Quartz-style L, W and # are not
--            accepted.
-- States:    none.  Locks: none.  Events: none.
-- Raises:    JQV13 bad cron expression, JQV14 unknown time zone.

-- The values one field stands for; raises JQV13 naming the field when it is malformed or out
-- of range. p_names (for months and weekdays) map to p_min + their index.
CREATE OR REPLACE FUNCTION jobqueue._cron_field(
    p_label text, p_field text, p_min integer, p_max integer, p_names text[] DEFAULT NULL
) RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_term text;
    v_parts text[];
    v_low integer;
    v_high integer;
    v_step integer;
    v_values integer[] := '{}';
BEGIN
    FOREACH v_term IN ARRAY string_to_array(p_field, ',') LOOP
        v_parts := regexp_match(v_term,
            '^(\*|[0-9]{1,2}|[A-Z]{3})(?:-([0-9]{1,2}|[A-Z]{3}))?(?:/([0-9]{1,2}))?$');
        IF v_parts IS NULL OR (v_parts[1] = '*' AND v_parts[2] IS NOT NULL) THEN
            RAISE EXCEPTION 'cron expression: bad % field "%"', p_label, p_field
                USING ERRCODE = 'JQV13';
        END IF;
        IF v_parts[1] = '*' THEN
            v_low := p_min;
            v_high := p_max;
        ELSE
            v_low := coalesce(array_position(p_names, v_parts[1]) + p_min - 1,
                              CASE WHEN v_parts[1] ~ '^[0-9]+$' THEN v_parts[1]::integer END);
            v_high := coalesce(array_position(p_names, v_parts[2]) + p_min - 1,
                               CASE WHEN v_parts[2] ~ '^[0-9]+$' THEN v_parts[2]::integer END);
            -- 'a/n' runs from a to the field's end, as in Debian cron.
            v_high := coalesce(v_high, CASE WHEN v_parts[3] IS NOT NULL THEN p_max END, v_low);
        END IF;
        v_step := coalesce(v_parts[3]::integer, 1);
        IF v_low IS NULL OR v_high IS NULL OR v_low NOT BETWEEN p_min AND p_max
           OR v_high NOT BETWEEN p_min AND p_max OR v_high < v_low OR v_step < 1 THEN
            RAISE EXCEPTION 'cron expression: bad % field "%" (values %-%)', p_label, p_field,
                p_min, p_max USING ERRCODE = 'JQV13';
        END IF;
        v_values := v_values || ARRAY(SELECT generate_series(v_low, v_high, v_step));
    END LOOP;
    RETURN v_values;
END
$$;

-- The expression to compute ticks with (a nickname's five fields, or the expression itself,
-- its whitespace collapsed); JQV13 when it is not one the workers can compute.
CREATE OR REPLACE FUNCTION jobqueue._cron_expression(p_cron text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
DECLARE
    c_months constant text[] := '{JAN,FEB,MAR,APR,MAY,JUN,JUL,AUG,SEP,OCT,NOV,DEC}';
    c_days constant text[] := '{SUN,MON,TUE,WED,THU,FRI,SAT}';
    c_month_days constant integer[] := '{31,29,31,30,31,30,31,31,30,31,30,31}';
    v_expr text := upper(btrim(p_cron, E' \t\n\r'));
    v_fields text[];
    v_offset integer;
    v_days integer[];
    v_months integer[];
BEGIN
    IF p_cron IS NULL OR length(p_cron) > 200 THEN
        RAISE EXCEPTION 'cron expression: required, at most 200 characters'
            USING ERRCODE = 'JQV13';
    END IF;
    v_expr := CASE v_expr
        WHEN '@YEARLY' THEN '0 0 1 1 *' WHEN '@ANNUALLY' THEN '0 0 1 1 *'
        WHEN '@MONTHLY' THEN '0 0 1 * *' WHEN '@WEEKLY' THEN '0 0 * * 0'
        WHEN '@DAILY' THEN '0 0 * * *' WHEN '@MIDNIGHT' THEN '0 0 * * *'
        WHEN '@HOURLY' THEN '0 * * * *' ELSE v_expr END;
    v_fields := regexp_split_to_array(v_expr, '\s+');
    IF cardinality(v_fields) NOT IN (5, 6) THEN
        RAISE EXCEPTION 'cron expression "%": five fields (minute hour day-of-month month day-of-week), six with a leading seconds field, or a nickname such as @hourly',
            left(p_cron, 200) USING ERRCODE = 'JQV13';
    END IF;
    v_offset := cardinality(v_fields) - 5;
    IF v_offset = 1 THEN
        PERFORM jobqueue._cron_field('second', v_fields[1], 0, 59);
    END IF;
    PERFORM jobqueue._cron_field('minute', v_fields[v_offset + 1], 0, 59);
    PERFORM jobqueue._cron_field('hour', v_fields[v_offset + 2], 0, 23);
    v_days := jobqueue._cron_field('day-of-month', v_fields[v_offset + 3], 1, 31);
    v_months := jobqueue._cron_field('month', v_fields[v_offset + 4], 1, 12, c_months);
    PERFORM jobqueue._cron_field('day-of-week', v_fields[v_offset + 5], 0, 7, c_days);
    -- Days that no chosen month has never come when the weekday does not stand in for them
    -- (Debian cron ORs the two day fields only when neither starts with '*').
    IF (v_fields[v_offset + 3] LIKE '*%' OR v_fields[v_offset + 5] LIKE '*%')
       AND (SELECT min(d) FROM unnest(v_days) AS d)
           > (SELECT max(c_month_days[m]) FROM unnest(v_months) AS m) THEN
        RAISE EXCEPTION 'cron expression "%": no chosen month has that day', left(p_cron, 200)
            USING ERRCODE = 'JQV13';
    END IF;
    RETURN array_to_string(v_fields, ' ');
END
$$;

-- The time zone's name when PostgreSQL knows it (the IANA names of pg_timezone_names).
CREATE OR REPLACE FUNCTION jobqueue._check_timezone(p_timezone text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_timezone IS NULL OR NOT EXISTS (
        SELECT FROM pg_catalog.pg_timezone_names WHERE name = p_timezone
    ) THEN
        RAISE EXCEPTION 'unknown time zone %; use an IANA name such as Europe/Paris or UTC',
            quote_nullable(left(p_timezone, 100)) USING ERRCODE = 'JQV14';
    END IF;
    RETURN p_timezone;
END
$$;
