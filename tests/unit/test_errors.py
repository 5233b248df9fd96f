"""The SQLSTATE table is one table in three places: the SQL, jobqueue.errors and the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobqueue import errors
from jobqueue.states import ACTIVE, TERMINAL, TRANSITIONS, JobStatus

ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = ROOT / "jobqueue" / "sql"
README = ROOT / "README.md"


def sql_codes() -> set[str]:
    found: set[str] = set()
    for path in sorted(SQL_DIR.glob("*.sql")):
        found |= set(re.findall(r"ERRCODE\s*=\s*'(JQ[A-Z0-9]{3})'", path.read_text()))
    return found


def readme_rows() -> dict[str, tuple[str, int]]:
    """SQLSTATE -> (exception, HTTP status) from the README's error table."""
    rows: dict[str, tuple[str, int]] = {}
    pattern = re.compile(r"^\|\s*`(JQ[A-Z0-9]{3})`\s*\|\s*`(\w+)`\s*\|\s*(\d{3})\s*\|(.+)\|\s*$")
    for line in README.read_text().splitlines():
        match = pattern.match(line)
        if match:
            code, name, status, meaning = match.groups()
            assert code not in rows, f"{code} is listed twice in the README"
            assert meaning.strip(), f"{code} has no meaning in the README"
            rows[code] = (name, int(status))
    return rows


def test_sql_codes_are_well_formed() -> None:
    codes = sql_codes()
    assert codes, "no ERRCODE found in jobqueue/sql"
    assert all(re.fullmatch(r"JQ[VANCTSR]\d\d", c) for c in codes), codes


def test_every_sql_code_has_a_class_and_a_readme_row_and_back() -> None:
    in_sql = sql_codes()
    in_python = set(errors.BY_SQLSTATE)
    # A few codes are not raised by the engine's SQL: PostgreSQL's own refusal of a function
    # a role may not run becomes RoleNotPermitted, and the web process throttles.
    raised_by_sql = {c for c, cls in errors.BY_SQLSTATE.items() if cls.raised_by == "sql"}
    assert {cls.raised_by for cls in errors.BY_SQLSTATE.values()} == {"sql", "postgres", "web"}
    in_readme = set(readme_rows())
    assert in_sql == raised_by_sql, in_sql ^ raised_by_sql
    assert in_readme == in_python, in_readme ^ in_python


@pytest.mark.parametrize("code", sorted(errors.BY_SQLSTATE))
def test_readme_row_matches_the_class(code: str) -> None:
    cls = errors.BY_SQLSTATE[code]
    assert readme_rows()[code] == (cls.__name__, cls.http_status)
    assert cls.__doc__ and cls.title
    assert getattr(errors, cls.__name__) is cls


def test_from_sqlstate_parses_json_detail() -> None:
    err = errors.from_sqlstate("JQR01", "slow down", '{"retry_after": 7}')
    assert isinstance(err, errors.RateLimited)
    assert err.retry_after == 7 and err.message == "slow down"
    assert err.detail == {"retry_after": 7}


def test_from_sqlstate_keeps_text_detail_and_ignores_foreign_codes() -> None:
    err = errors.from_sqlstate("JQT01", "no", "not json")
    assert isinstance(err, errors.IllegalTransition) and err.detail == {"text": "not json"}
    assert errors.from_sqlstate("23505", "unique", None) is None


def test_default_message_is_the_docstring() -> None:
    assert errors.JobNotFound().message == (errors.JobNotFound.__doc__ or "").strip()


def test_state_sets_partition_the_enum() -> None:
    assert ACTIVE | TERMINAL == set(JobStatus) and not ACTIVE & TERMINAL
    assert TERMINAL == {JobStatus.COMPLETED, JobStatus.DEAD, JobStatus.CANCELED}


def test_transitions_cover_the_lifecycle() -> None:
    sources = {a for a, _ in TRANSITIONS}
    targets = {b for _, b in TRANSITIONS}
    # Every status but completed can be left; every status but waiting can be reached.
    assert sources == set(JobStatus) - {JobStatus.COMPLETED}
    assert targets == set(JobStatus) - {JobStatus.WAITING}
    assert all(a != b for a, b in TRANSITIONS)


def test_only_connection_failures_become_database_unavailable() -> None:
    """A deadlock is an OperationalError too, but it is not an outage."""
    import psycopg

    from jobqueue import db, errors

    assert not isinstance(
        db.translate(psycopg.errors.DeadlockDetected("deadlock")), errors.DatabaseUnavailable
    )
    assert isinstance(
        db.translate(psycopg.OperationalError("connection refused")), errors.DatabaseUnavailable
    )
    assert isinstance(
        db.translate(psycopg.errors.AdminShutdown("terminating connection")),
        errors.DatabaseUnavailable,
    )
