-- 0003: a rate limit needs both its count and its period.
--
-- The first form of this check let a half-set rate limit through: with one of the two NULL,
-- "rate_limit > 0 AND rate_period > interval '0'" is NULL, and a CHECK passes on NULL.

ALTER TABLE jobqueue.job_type DROP CONSTRAINT job_type_rate_limit_check;
ALTER TABLE jobqueue.job_type ADD CONSTRAINT job_type_rate_limit_check CHECK (
    (rate_limit IS NULL AND rate_period IS NULL)
    OR (rate_limit IS NOT NULL AND rate_period IS NOT NULL
        AND rate_limit > 0 AND rate_period > interval '0' AND rate_period <= interval '1 day')
);
