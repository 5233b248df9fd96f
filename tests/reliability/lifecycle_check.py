"""Invariants every job must satisfy whatever raced on it, checked from the tables."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

TERMINAL = {"completed", "dead", "canceled"}


def lifecycle_violations(conn: psycopg.Connection[Any], job_ids: list[int]) -> list[str]:
    """Every way the jobs' rows disagree with the lifecycle; empty when all is consistent."""
    cur = conn.cursor(row_factory=dict_row)
    legal = {
        (r["from_status"], r["to_status"])
        for r in cur.execute(
            "SELECT from_status::text, to_status::text FROM jobqueue.job_transition"
        )
    }
    jobs = {
        r["id"]: r
        for r in cur.execute(
            "SELECT id, status::text AS status, attempt, finished_at FROM jobqueue.job"
            " WHERE id = ANY(%s)",
            (job_ids,),
        )
    }
    attempts: dict[int, list[dict[str, Any]]] = {}
    # Ended attempts have rows; a running one lives on its job row (attempt_started_at).
    for r in cur.execute(
        "SELECT job_id, attempt, outcome, finished_at FROM ("
        " SELECT job_id, attempt, outcome::text AS outcome, finished_at FROM jobqueue.attempt"
        " WHERE job_id = ANY(%s)"
        " UNION ALL SELECT id, attempt, NULL, NULL FROM jobqueue.job"
        " WHERE id = ANY(%s) AND attempt_started_at IS NOT NULL) AS a"
        " ORDER BY job_id, attempt",
        (job_ids, job_ids),
    ):
        attempts.setdefault(r["job_id"], []).append(r)
    events: dict[int, list[dict[str, Any]]] = {}
    for r in cur.execute(
        "SELECT job_id, type, data FROM jobqueue.event WHERE job_id = ANY(%s) ORDER BY id",
        (job_ids,),
    ):
        events.setdefault(r["job_id"], []).append(r)

    problems: list[str] = []
    for job_id in job_ids:
        job = jobs.get(job_id)
        if job is None:
            problems.append(f"job {job_id} is missing")
            continue
        status = job["status"]
        if (status in TERMINAL) != (job["finished_at"] is not None):
            problems.append(f"job {job_id}: status {status} with finished_at {job['finished_at']}")
        rows = attempts.get(job_id, [])
        if [a["attempt"] for a in rows] != list(range(1, len(rows) + 1)):
            problems.append(f"job {job_id}: attempt numbers {[a['attempt'] for a in rows]}")
        if len(rows) != job["attempt"]:
            problems.append(f"job {job_id}: attempt {job['attempt']} but {len(rows)} rows")
        open_attempts = [a["attempt"] for a in rows if a["outcome"] is None]
        if len(open_attempts) > 1:
            problems.append(f"job {job_id}: attempts {open_attempts} running at once")
        if status == "running" and open_attempts != [job["attempt"]]:
            problems.append(f"job {job_id}: running without its attempt open ({open_attempts})")
        if status != "running" and open_attempts:
            problems.append(f"job {job_id}: {status} with attempt {open_attempts} still open")
        if status == "completed" and (not rows or rows[-1]["outcome"] != "completed"):
            problems.append(f"job {job_id}: completed but its last attempt is not")
        path = events.get(job_id, [])
        if not path or path[0]["type"] != "submitted":
            problems.append(f"job {job_id}: first event is not 'submitted'")
            continue
        current = path[0]["data"]["status"]
        for event in path[1:]:
            data = event["data"]
            if "from" not in data:
                continue  # not a status change (a cancel request, progress)
            step = (data["from"], data["status"])
            if data["from"] != current or step not in legal:
                problems.append(f"job {job_id}: illegal event path step {current} -> {step}")
            current = data["status"]
        if current != status:
            problems.append(f"job {job_id}: events end at {current}, the job is {status}")
    return problems
