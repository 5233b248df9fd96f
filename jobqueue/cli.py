"""The ``jobqueue`` command: one entry point, one verb per engine call.

Exit codes: 0 success; 1 the engine refused (the error's title and message are printed);
2 usage error; 3 database unavailable; 4 ``show --follow`` saw the job end without completing.
The DSN comes from ``--dsn``, else ``JOBQUEUE_DSN``, else ``DATABASE_URL``. ``--json`` prints
machine-readable output; ``--as USER`` acts as that user (checked against the user's
organizations) instead of as a trusted service.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from jobqueue import db, errors, models
from jobqueue.client import Client
from jobqueue.states import TERMINAL, JobStatus

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOT_COMPLETED = 0, 1, 2, 3, 4

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class UsageError(Exception):
    """The arguments are well-formed for argparse but unusable."""


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[Client]:
    dsn = args.dsn or db.dsn_from_env()
    if not dsn:
        raise UsageError("no database: pass --dsn or set JOBQUEUE_DSN")
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


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    out.print(table)


def _fields(record: Any) -> None:
    for key, value in _plain(record).items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        out.print(f"[bold]{key}[/bold]: {shown}")


JOB_COLUMNS = ("id", "job_type", "organization", "status", "priority", "attempt", "progress")


def _jobs_table(jobs: list[models.Job]) -> None:
    _table([j.to_dict() for j in jobs], JOB_COLUMNS)


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc


def _seconds(text: str) -> timedelta:
    return timedelta(seconds=float(text))


# --- verbs -------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from jobqueue import up

    return up.run(args)


def cmd_migrate(args: argparse.Namespace) -> int:
    from jobqueue.migrate import migrate

    dsn = args.dsn or db.dsn_from_env()
    if not dsn:
        raise UsageError("no database: pass --dsn or set JOBQUEUE_DSN")
    with err.status("Migrating…"), db.translated():
        migrate(dsn)
    _emit(args, {"migrated": True}, lambda _: out.print("Database is up to date."))
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from jobqueue.worker import main as worker_main

    argv = ["--concurrency", str(args.concurrency), "--queues", args.queues]
    argv += ["--execution", args.execution, "--kill-grace", str(args.kill_grace)]
    if args.dsn:
        argv += ["--dsn", args.dsn]
    return int(worker_main(argv))


def cmd_web(args: argparse.Namespace) -> int:
    from jobqueue import web

    argv = ["--host", args.host, "--port", str(args.port)]
    if args.dsn:
        argv += ["--dsn", args.dsn]
    web.main(argv)
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.submit_job(
            args.job_type,
            args.params,
            organization=args.org,
            priority=args.priority,
            run_at=datetime.fromisoformat(args.run_at) if args.run_at else None,
            depends_on=args.depends_on,
            dedup=not args.no_dedup,
            actor=args.actor,
        )
    label = "duplicate of" if job.duplicate else "submitted"
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
    with _client(args) as client:
        token = client.create_token(args.user, args.name, actor=args.actor)
    _emit(args, token, lambda t: out.print(t.secret))
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
    except UsageError as exc:
        err.print(f"usage error: {exc}")
        return EXIT_USAGE
    except errors.DatabaseUnavailable as exc:
        err.print(f"database unavailable: {exc}")
        return EXIT_UNAVAILABLE
    except errors.JobqueueError as exc:
        if args.json:
            problem = {"title": exc.title, "message": exc.message, "sqlstate": exc.sqlstate}
            print(json.dumps(problem | {"detail": exc.detail}), file=sys.stderr)
        else:
            err.print(f"{exc.title}: {exc.message}")
        return EXIT_REFUSED


if __name__ == "__main__":
    raise SystemExit(main())
