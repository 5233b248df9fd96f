"""The README's psql section runs as written against a freshly migrated database."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

README = Path(__file__).resolve().parents[2] / "README.md"


def psql_statements() -> list[str]:
    text = README.read_text()
    section = text.split("## Using it from psql alone", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the psql section has one sql block"
    body = "\n".join(line for line in blocks[0].splitlines() if not line.startswith("--"))
    statements = [s.strip() for s in re.split(r";\s*\n", body + "\n") if s.strip()]
    assert all(s.upper().startswith("SELECT") for s in statements), statements
    return statements


def test_readme_psql_section_runs_as_written(dsn: str) -> None:
    statements = psql_statements()
    assert len(statements) >= 10
    results: list[list[tuple[object, ...]]] = []
    # A plain connection, like psql's: no jobqueue session settings beyond the defaults.
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            try:
                results.append(conn.execute(statement).fetchall())  # type: ignore[arg-type]
            except psycopg.Error as exc:
                raise AssertionError(f"README statement failed: {statement}\n{exc}") from exc
        jobs = dict(conn.execute("SELECT id, status::text FROM jobqueue.job").fetchall())
        dependents = conn.execute(
            "SELECT job_id FROM jobqueue.job_dependency WHERE depends_on_id = 1"
        ).fetchall()
    # Only job_attempts may come back empty: job 1 never ran.
    assert sum(1 for rows in results if not rows) <= 1
    # Job 1 was canceled, which canceled the job that depends on it, then retried.
    assert jobs[1] == "queued"
    assert dependents and all(jobs[d] == "canceled" for (d,) in dependents)
