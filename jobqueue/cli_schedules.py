"""``jobqueue schedules``: list, create, update, enable, disable, delete and run-now.

Each verb is one call of the schedule API (``jobqueue/sql/schedules.sql``) through the
client, checked against ``--as USER`` like every other verb.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from jobqueue import models
from jobqueue.cli_parser import int_range, number_range

_grace_seconds = number_range(1, 86400)


def _seconds(text: str) -> timedelta:
    return timedelta(seconds=_grace_seconds(text))


SCHEDULE_COLUMNS = (
    "name",
    "organization",
    "job_type",
    "cron",
    "timezone",
    "enabled",
    "next_run_at",
    "last_run_at",
    "last_job_status",
)


def _cli() -> Any:
    from jobqueue import cli

    return cli


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line, by the API's argument names."""
    names = ("params", "timezone", "priority", "missed", "catch_up_limit", "grace")
    found = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if getattr(args, "no_dedup", False):
        found["dedup"] = False
    return found


def _show(args: argparse.Namespace, schedule: models.Schedule, verb: str) -> int:
    cli = _cli()
    state = "enabled" if schedule.enabled else "disabled"
    cli._emit(
        args,
        schedule,
        lambda s: cli.out.print(f"schedule {s.name} of {s.organization} {verb} ({state})"),
    )
    return int(cli.EXIT_OK)


def cmd_list(args: argparse.Namespace) -> int:
    cli = _cli()
    with cli._client(args) as client:
        found = client.list_schedules(actor=args.actor, organization=args.org)
    cli._emit(args, found, lambda rows: cli._table([s.to_dict() for s in rows], SCHEDULE_COLUMNS))
    return int(cli.EXIT_OK)


def cmd_create(args: argparse.Namespace) -> int:
    with _cli()._client(args) as client:
        schedule = client.create_schedule(
            args.name,
            args.job_type,
            args.cron,
            organization=args.org,
            enabled=not args.disabled,
            actor=args.actor,
            **_settings(args),
        )
    return _show(args, schedule, "created")


def cmd_update(args: argparse.Namespace) -> int:
    settings = _settings(args)
    for name in ("job_type", "cron"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    with _cli()._client(args) as client:
        schedule = client.update_schedule(
            args.name, organization=args.org, actor=args.actor, **settings
        )
    return _show(args, schedule, "updated")


def _enabled(value: bool) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        with _cli()._client(args) as client:
            schedule = client.set_schedule_enabled(
                args.name, value, organization=args.org, actor=args.actor
            )
        return _show(args, schedule, "enabled" if value else "disabled")

    return run


def cmd_delete(args: argparse.Namespace) -> int:
    with _cli()._client(args) as client:
        schedule = client.delete_schedule(args.name, organization=args.org, actor=args.actor)
    return _show(args, schedule, "deleted")


def cmd_run_now(args: argparse.Namespace) -> int:
    cli = _cli()
    with cli._client(args) as client:
        job = client.run_schedule(args.name, organization=args.org, actor=args.actor)
    label = "duplicate of" if job.duplicate else "submitted"
    cli._emit(args, job, lambda j: cli.out.print(f"{label} job {j.id} ({j.status})"))
    return int(cli.EXIT_OK)


def add_verbs(
    verbs: argparse._SubParsersAction[Any],
    verb: Callable[..., argparse.ArgumentParser],
    json_arg: Callable[[str], Any],
) -> None:
    """The ``schedules`` verb and its sub-verbs."""
    group = verbs.add_parser(
        "schedules", help="recurring jobs", description="recurring jobs (docs/schedules.md)"
    )
    sub = group.add_subparsers(dest="schedules_verb", required=True, metavar="VERB")

    listing = verb(sub, "list", "list schedules with their next and last run")
    listing.add_argument("--org")
    listing.set_defaults(run=cmd_list)

    def settings(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--params", type=json_arg, help="JSON object")
        parser.add_argument("--timezone", help="IANA time zone (default UTC)")
        parser.add_argument("--priority", type=int_range(-1000, 1000))
        parser.add_argument("--no-dedup", action="store_true", help="a new job every tick")
        parser.add_argument(
            "--missed", choices=("skip", "catch_up"), help="ticks found later than --grace"
        )
        parser.add_argument(
            "--catch-up-limit", type=int_range(1, 100), help="missed ticks run (catch_up)"
        )
        parser.add_argument("--grace", type=_seconds, help="seconds (1 to 86400)")

    create = verb(sub, "create", "create a schedule")
    create.add_argument("name")
    create.add_argument("job_type", metavar="TYPE")
    create.add_argument("cron", help="e.g. '30 7 * * mon-fri' or @hourly")
    create.add_argument("--org", required=True)
    create.add_argument("--disabled", action="store_true", help="create it disabled")
    settings(create)
    create.set_defaults(run=cmd_create)

    update = verb(sub, "update", "change a schedule (options left out keep their value)")
    update.add_argument("name")
    update.add_argument("--org", required=True)
    update.add_argument("--job-type")
    update.add_argument("--cron")
    settings(update)
    update.set_defaults(run=cmd_update)

    for name, help_, run in (
        ("enable", "resume a schedule (from the next tick)", _enabled(True)),
        ("disable", "pause a schedule", _enabled(False)),
        ("delete", "delete a schedule (its jobs stay)", cmd_delete),
        ("run-now", "submit the schedule's job now", cmd_run_now),
    ):
        parser = verb(sub, name, help_)
        parser.add_argument("name")
        parser.add_argument("--org", required=True)
        parser.set_defaults(run=run)
