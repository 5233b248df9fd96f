"""Reads of the handlers' attempt log: did every job run, and never twice at once?"""

from __future__ import annotations

from typing import Any

import psycopg


def overlapping_attempts(conn: psycopg.Connection[Any]) -> list[Any]:
    """Attempts that started before the job's previous attempt ended, or ran twice.

    An attempt's end is its ``ended`` log row, else the engine's ``attempt.finished_at``
    (a killed attempt never logs its end; the rescuer closes it). Empty when all is well.
    """
    return conn.execute(
        """
        WITH spans AS (
            SELECT s.job_id, s.attempt, s.at AS started,
                   coalesce(e.at, a.finished_at) AS ended,
                   count(*) OVER (PARTITION BY s.job_id, s.attempt) AS starts
            FROM public.attempt_log AS s
            LEFT JOIN public.attempt_log AS e
              ON e.job_id = s.job_id AND e.attempt = s.attempt AND e.phase = 'ended'
            LEFT JOIN jobqueue.attempt AS a ON a.job_id = s.job_id AND a.attempt = s.attempt
            WHERE s.phase = 'started'
        )
        SELECT x.job_id, x.attempt, y.attempt AS other, x.started, x.ended, y.started, x.starts
        FROM spans AS x
        LEFT JOIN spans AS y
          ON y.job_id = x.job_id AND y.attempt > x.attempt
         AND (x.ended IS NULL OR y.started < x.ended)
        WHERE y.attempt IS NOT NULL OR x.starts > 1
        ORDER BY 1, 2
        LIMIT 20
        """
    ).fetchall()


def jobs_without_a_logged_completion(conn: psycopg.Connection[Any]) -> list[Any]:
    """Completed jobs whose completing attempt did not log both its start and its end."""
    return conn.execute(
        """
        SELECT j.id, j.attempt FROM jobqueue.job AS j
        WHERE j.status = 'completed' AND NOT (
            EXISTS (SELECT FROM public.attempt_log AS l WHERE l.job_id = j.id
                    AND l.attempt = j.attempt AND l.phase = 'started')
            AND EXISTS (SELECT FROM public.attempt_log AS l WHERE l.job_id = j.id
                        AND l.attempt = j.attempt AND l.phase = 'ended'))
        LIMIT 20
        """
    ).fetchall()
