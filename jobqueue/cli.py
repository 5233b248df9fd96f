"""The ``jobqueue`` command: one entry point, one verb per engine call.

Exit codes: 0 success; 1 the engine refused (the error's title and message are printed);
2 usage error; 3 database unavailable; 4 ``show --follow`` saw the job end without completing;
130 interrupted by Ctrl-C.
The DSN comes from ``--dsn`` (before or after the verb), else ``JOBQUEUE_DSN``, else
``DATABASE_URL``, else a ``jobqueue up`` running on this machine (:mod:`jobqueue.discovery`).
``--json`` prints machine-readable output; ``--as USER`` acts as that user (checked against
the user's organizations) instead of as a trusted service.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from jobqueue import db, discovery, errors, models
from jobqueue.client import Client
from jobqueue.states import TERMINAL, JobStatus

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOT_COMPLETED = 0, 1, 2, 3, 4

out = Console(highlight=False)
# Errors are one line, however narrow the terminal.
err = Console(stderr=True, highlight=False, soft_wrap=True)


# The engine's argument names that the CLI spells as options; its messages say what was typed.
OPTION_NAMES = {
    "run_at": "--run-at",
    "depends_on": "--depends-on",
    "page_size": "--limit",
    "before_id": "--before-id",
    "max_retries": "--max-retries",
    "backoff_base": "--backoff-base",
    "backoff_max": "--backoff-max",
    "dedup_window": "--dedup-window",
    "rate_limit": "--rate-limit",
    "rate_period": "--rate-period",
}
_OPTION_WORDS = re.compile(r"\b(" + "|".join(OPTION_NAMES) + r")\b")


def _as_typed(message: str) -> str:
    """An engine message with its argument names spelt as the CLI's options."""
    return _OPTION_WORDS.sub(lambda m: OPTION_NAMES[m[1]], message)


class UsageError(Exception):
    """The arguments are well-formed for argparse but unusable."""


def _dsn(args: argparse.Namespace) -> str:
    """The database: --dsn, $JOBQUEUE_DSN, $DATABASE_URL, or a ``jobqueue up`` running here;
    a malformed one is a usage error naming where it came from."""
    dsn = discovery.resolve_dsn(args.dsn)
    if not dsn:
        raise UsageError(
            "no database: pass --dsn, set JOBQUEUE_DSN, or start `jobqueue up` on this machine"
        )
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        source = "--dsn" if args.dsn else "JOBQUEUE_DSN/DATABASE_URL"
        reason = str(exc).splitlines()[0].removeprefix("invalid dsn: ")
        raise UsageError(
            f"{source} is not a PostgreSQL URL or connection string ({reason}); "
            "expected e.g. postgresql://user@host:5432/dbname"
        ) from None
    return dsn


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[Client]:
    dsn = _dsn(args)
    with db.translated(), db.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        yield Client(connection=conn)


def _plain(value: Any) -> Any:
    if isinstance(value, models.Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def _emit(args: argparse.Namespace, value: Any, human: Callable[[Any], None]) -> None:
    if args.json:
        print(json.dumps(_plain(value), default=str))
    else:
        human(value)


def _cell(value: Any) -> str:
    """A table cell: empty for null, JSON for the rest (true, not True), text as is."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*(_cell(_plain(row.get(c))) for c in columns))
    out.print(table)


def _fields(record: Any) -> None:
    """One line per field; values as JSON writes them (null, true, [1, 2]), text as is."""
    for key, value in _plain(record).items():
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        out.print(f"[bold]{key}[/bold]: ", end="")
        out.print(shown, markup=False)


JOB_COLUMNS = ("id", "job_type", "organization", "status", "priority", "attempt", "progress")


def _jobs_table(jobs: list[models.Job]) -> None:
    _table([j.to_dict() for j in jobs], JOB_COLUMNS)


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc


def _seconds(text: str) -> timedelta:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}")
    return timedelta(seconds=seconds)


def _timestamp(text: str) -> datetime:
    """An ISO 8601 time; without a zone, it is this machine's local time."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an ISO 8601 time such as 2030-01-31T09:00 or 2030-01-31T09:00:00+00:00, "
            f"got {text!r}"
        ) from None
    return value if value.tzinfo is not None else value.astimezone()


# --- verbs -------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from jobqueue import up

    return up.run(args)


def cmd_dsn(args: argparse.Namespace) -> int:
    dsn = _dsn(args)
    _emit(args, {"dsn": dsn}, lambda _: print(dsn))
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from jobqueue.migrate import migrate

    dsn = _dsn(args)
    with err.status("Migrating…"), db.translated():
        migrate(dsn)
    _emit(args, {"migrated": True}, lambda _: out.print("Database is up to date."))
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from jobqueue.worker import main as worker_main

    argv = ["--concurrency", str(args.concurrency), "--queues", args.queues]
    argv += ["--execution", args.execution, "--kill-grace", str(args.kill_grace)]
    argv += ["--dsn", _dsn(args)]
    return int(worker_main(argv))


def cmd_web(args: argparse.Namespace) -> int:
    from jobqueue import web

    argv = ["--host", args.host, "--port", str(args.port), "--dsn", _dsn(args)]
    web.main(argv)
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.submit_job(
            args.job_type,
            args.params,
            organization=args.org,
            priority=args.priority,
            run_at=args.run_at,
            depends_on=args.depends_on,
            dedup=not args.no_dedup,
            queue=args.queue,
            max_retries=args.max_retries,
            timeout=args.timeout,
            actor=args.actor,
        )
        label = "duplicate of" if job.duplicate else "submitted"
        if args.follow:
            err.print(f"{label} job {job.id}")
            args.job_id = job.id
            return _follow(args, client)
    _emit(args, job, lambda j: out.print(f"{label} job {j.id} ({j.status})"))
    return EXIT_OK


def _follow(args: argparse.Namespace, client: Client) -> int:
    job = client.get_job(args.job_id, actor=args.actor)
    with Progress(
        TextColumn("job {task.fields[job_id]} {task.fields[status]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}% {task.fields[message]}"),
        console=err,
        disable=args.json,
    ) as progress:
        task = progress.add_task("", total=100, job_id=job.id, status=job.status, message="")
        while True:
            progress.update(
                task,
                completed=job.progress or 0,
                status=job.status.value,
                message=job.progress_message or "",
            )
            if args.json:
                print(json.dumps({"id": job.id, "status": job.status, "progress": job.progress}))
            if job.status in TERMINAL:
                break
            time.sleep(args.interval)
            job = client.get_job(args.job_id, actor=args.actor)
    _emit(args, job, _fields)
    return EXIT_OK if job.status is JobStatus.COMPLETED else EXIT_NOT_COMPLETED


def cmd_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.follow:
            return _follow(args, client)
        job = client.get_job(args.job_id, actor=args.actor)
    _emit(args, job, _fields)
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        jobs = client.list_jobs(
            actor=args.actor,
            organization=args.org,
            status=args.status,
            job_type=args.type,
            before_id=args.before_id,
            page_size=args.limit,
        )
    _emit(args, jobs, _jobs_table)
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.cancel_job(args.job_id, actor=args.actor)
    note = " (cancel requested)" if job.status is JobStatus.RUNNING else ""
    _emit(args, job, lambda j: out.print(f"job {j.id} {j.status}{note}"))
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.retry_job(args.job_id, actor=args.actor)
    _emit(args, job, lambda j: out.print(f"job {j.id} {j.status}"))
    return EXIT_OK


def cmd_attempts(args: argparse.Namespace) -> int:
    with _client(args) as client:
        attempts = client.job_attempts(args.job_id, actor=args.actor)
    columns = ("attempt", "worker_id", "started_at", "duration_ms", "outcome", "error")
    _emit(args, attempts, lambda rows: _table([a.to_dict() for a in rows], columns))
    return EXIT_OK


def cmd_metrics(args: argparse.Namespace) -> int:
    since = datetime.now(UTC) - timedelta(hours=args.hours)
    with _client(args) as client:
        result = client.metrics(actor=args.actor, organization=args.org, since=since)

    def human(m: dict[str, Any]) -> None:
        counts = m.get("counts_by_status") or {}
        _table([counts], list(counts))
        out.print(f"processing time (ms): {json.dumps(m.get('processing_time_ms'))}")
        _table(m.get("failure_rate_by_type") or [], ("job_type", "attempts", "failed", "rate"))

    _emit(args, result, human)
    return EXIT_OK


def cmd_types_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        types = client.list_job_types(actor=args.actor)
    columns = ("name", "handler", "queue", "priority", "max_retries", "timeout", "enabled")
    _emit(args, types, lambda rows: _table([t.to_dict() for t in rows], columns))
    return EXIT_OK


def cmd_types_register(args: argparse.Namespace) -> int:
    from jobqueue.handlers import register_job_type

    settings: dict[str, Any] = {"queue": args.queue, "priority": args.priority}
    for name in (
        "max_retries",
        "timeout",
        "backoff_base",
        "backoff_max",
        "dedup_window",
        "execution",
    ):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    if args.rate_limit is not None:
        settings.update(rate_limit=args.rate_limit, rate_period=args.rate_period)
    with _client(args) as client:
        job_type = register_job_type(client, args.name, args.handler, actor=args.actor, **settings)
    _emit(args, job_type, lambda t: out.print(f"registered {t.name} -> {t.handler}"))
    return EXIT_OK


def cmd_org_create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        org = client.create_organization(args.name, actor=args.actor)
    _emit(args, org, lambda o: out.print(f"organization {o.organization} ({o.id})"))
    return EXIT_OK


def cmd_user_add(args: argparse.Namespace) -> int:
    with _client(args) as client:
        user = client.create_user(args.name, admin=args.admin, actor=args.actor)
        memberships = [
            client.add_member(args.name, org, role=args.role, actor=args.actor) for org in args.org
        ]
    result = {"user": user.to_dict(), "memberships": [m.to_dict() for m in memberships]}

    def human(_: Any) -> None:
        kind = "admin " if user.is_admin else ""
        out.print(f"{kind}user {user.user_name}")
        for m in memberships:
            out.print(f"  {m.member_role} of {m.organization_name}")

    _emit(args, result, human)
    return EXIT_OK


def cmd_token_create(args: argparse.Namespace) -> int:
    expires_in = None if args.expires_days is None else timedelta(days=args.expires_days)
    with _client(args) as client:
        token = client.create_token(args.user, args.name, expires_in=expires_in, actor=args.actor)

    def human(t: models.NewToken) -> None:
        # The id (for revoking it) on stderr: stdout stays the secret alone, for scripts.
        until = f", expires {t.expires_at.isoformat()}" if t.expires_at else ""
        err.print(f"token {t.token_id} for {t.user_name} ({t.token_name}{until})")
        out.print(t.secret)

    _emit(args, token, human)
    return EXIT_OK


def cmd_token_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        tokens = client.list_tokens(args.user, actor=args.actor)
    columns = (
        "token_id",
        "user_name",
        "token_name",
        "kind",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    _emit(args, tokens, lambda rows: _table([t.to_dict() for t in rows], columns))
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.revoke_token(args.token_id, actor=args.actor)
    _emit(args, result, lambda _: out.print(f"token {args.token_id} revoked"))
    return EXIT_OK


def cmd_cleanup(args: argparse.Namespace) -> int:
    retention = timedelta(days=args.retention_days)
    deleted = 0
    with _client(args) as client:
        with Progress(
            TextColumn("cleanup"), TextColumn("{task.completed} jobs deleted"), console=err
        ) as progress:
            task = progress.add_task("", total=None)
            while True:
                batch = client.cleanup_batch(retention=retention, batch=args.batch)
                deleted += batch
                progress.update(task, completed=deleted)
                if batch == 0:
                    break
    _emit(args, {"deleted": deleted}, lambda _: out.print(f"{deleted} jobs deleted"))
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from jobqueue import cli_parser

    return cli_parser.build(sys.modules[__name__])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except KeyboardInterrupt:
        # Ctrl-C (e.g. during show --follow): stop quietly, with the shell's code for it.
        err.print("interrupted", markup=False)
        return 130
    except UsageError as exc:
        err.print(f"usage error: {exc}", markup=False)
        return EXIT_USAGE
    except errors.DatabaseUnavailable as exc:
        reason = str(exc).removeprefix("database unavailable: ")
        err.print(f"database unavailable: {reason}", markup=False)
        return EXIT_UNAVAILABLE
    except errors.JobqueueError as exc:
        if args.json:
            message = _as_typed(exc.message)
            problem = {"title": exc.title, "message": message, "sqlstate": exc.sqlstate}
            print(json.dumps(problem | {"detail": exc.detail}), file=sys.stderr)
        else:
            err.print(f"{exc.title}: {_as_typed(exc.message)}", markup=False)
        return EXIT_REFUSED


if __name__ == "__main__":
    raise SystemExit(main())
