"""The argument parser of the ``jobqueue`` command: verbs, options and their help."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from types import ModuleType
from typing import NoReturn


def _common(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """--dsn, --json and --as, accepted before the verb and after it; a verb's own default
    is SUPPRESS, so a value given before the verb is not reset by it."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "--dsn",
        default=default(None),
        help="database URL (default: $JOBQUEUE_DSN, $DATABASE_URL, or a `jobqueue up` running "
        "on this machine)",
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON for scripts"
    )
    parser.add_argument(
        "--as",
        dest="actor",
        metavar="USER",
        default=default(None),
        help="act as this user (checked against the user's organizations)",
    )


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line (and exit 2, as argparse's do)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def int_range(low: int, high: int) -> Callable[[str], int]:
    """An integer option within [low, high]; argparse names the option in its error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def number_range(low: float, high: float, *, open_low: bool = False) -> Callable[[str], float]:
    """A number option within [low, high] (or (low, high] when open_low)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        below = value <= low if open_low else value < low
        if below or value > high or value != value:
            bound = "over" if open_low else "at least"
            raise argparse.ArgumentTypeError(
                f"must be {bound} {low:g} and at most {high:g}, got {text}"
            )
        return value

    return parse


JOB_ID = int_range(1, 2**63 - 1)


def build(cli: ModuleType) -> argparse.ArgumentParser:
    """The full parser; each verb's ``run`` is the matching ``cmd_*`` of ``cli``."""
    parser = Parser(
        prog="jobqueue",
        description="A Postgres-native background job engine.",
        epilog="Exit codes: 0 ok, 1 refused by the engine, 2 usage, 3 database unavailable, "
        "4 a followed job ended without completing.",
    )
    _common(parser, top=True)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(
        parent: argparse._SubParsersAction[Parser], name: str, help_: str
    ) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help_, description=help_)
        _common(sub)
        return sub

    up = verb(verbs, "up", "run a database, a worker and the dashboard together")
    from jobqueue.up import add_arguments

    add_arguments(up)
    up.set_defaults(run=cli.cmd_up)

    verb(verbs, "migrate", "create or update the database schema").set_defaults(run=cli.cmd_migrate)
    verb(
        verbs, "dsn", 'print the database URL the other verbs use (e.g. psql "$(jobqueue dsn)")'
    ).set_defaults(run=cli.cmd_dsn)

    worker = verb(verbs, "worker", "run a worker until SIGTERM/SIGINT")
    worker.add_argument("--queues", default="", help="comma-separated queues (default: all)")
    worker.add_argument(
        "--concurrency", type=int_range(1, 10_000), default=10, help="jobs at once (10)"
    )
    worker.add_argument(
        "--execution",
        choices=("inline", "process"),
        default="inline",
        help="where handlers of job types that name no mode run (inline)",
    )
    worker.add_argument(
        "--kill-grace",
        type=number_range(0, 3600),
        default=5.0,
        help="seconds from SIGTERM to SIGKILL (5)",
    )
    worker.set_defaults(run=cli.cmd_worker)

    web = verb(verbs, "web", "serve the JSON API and the dashboard")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int_range(1, 65535), default=8000)
    web.set_defaults(run=cli.cmd_web)

    submit = verb(verbs, "submit", "submit a job")
    submit.add_argument("job_type", metavar="TYPE")
    submit.add_argument("params", nargs="?", type=cli._json_arg, default={}, help="JSON object")
    submit.add_argument("--org", required=True, help="organization")
    submit.add_argument("--priority", type=int_range(-1000, 1000), help="-1000..1000")
    submit.add_argument(
        "--run-at",
        type=cli._timestamp,
        help="ISO 8601 time to run at, e.g. 2030-01-31T09:00 (local time unless it has a zone)",
    )
    submit.add_argument("--depends-on", type=JOB_ID, nargs="*", metavar="ID")
    submit.add_argument("--no-dedup", action="store_true", help="always create a new job")
    submit.add_argument(
        "--follow", action="store_true", help="then show its progress until it ends (as show)"
    )
    submit.add_argument(
        "--interval",
        type=number_range(0, 3600, open_low=True),
        default=0.5,
        help="with --follow: seconds between polls (0.5)",
    )
    submit.add_argument("--queue", help="this job's queue (default: its type's)")
    submit.add_argument(
        "--max-retries", type=int_range(0, 100), help="this job's (default: its type's)"
    )
    submit.add_argument("--timeout", type=cli._seconds, help="seconds (default: its type's)")
    submit.set_defaults(run=cli.cmd_submit)

    show = verb(verbs, "show", "show a job")
    show.add_argument("job_id", type=JOB_ID, metavar="ID")
    show.add_argument("--follow", action="store_true", help="print progress until the job ends")
    show.add_argument(
        "--interval",
        type=number_range(0, 3600, open_low=True),
        default=0.5,
        help="seconds between polls (0.5)",
    )
    show.set_defaults(run=cli.cmd_show)

    jobs = verb(verbs, "jobs", "list jobs, newest first")
    jobs.add_argument("--org")
    jobs.add_argument("--status")
    jobs.add_argument("--type")
    jobs.add_argument("--before-id", type=JOB_ID, help="the last id of the previous page")
    jobs.add_argument("--limit", type=int_range(1, 500), default=50, help="page size, 1..500 (50)")
    jobs.set_defaults(run=cli.cmd_jobs)

    for name, help_, handler in (
        ("cancel", "cancel a job (a running one gets a cancel request)", cli.cmd_cancel),
        ("retry", "queue a dead or canceled job again", cli.cmd_retry),
        ("attempts", "list a job's attempts", cli.cmd_attempts),
    ):
        sub = verb(verbs, name, help_)
        sub.add_argument("job_id", type=JOB_ID, metavar="ID")
        sub.set_defaults(run=handler)

    metrics = verb(verbs, "metrics", "counts, queue depth, timings and failure rates")
    metrics.add_argument("--org")
    metrics.add_argument(
        "--hours",
        type=number_range(0, 90 * 24, open_low=True),
        default=24.0,
        help="window in hours, up to 2160 (24)",
    )
    metrics.set_defaults(run=cli.cmd_metrics)

    types = verbs.add_parser("types", help="job types", description="job types")
    type_verbs = types.add_subparsers(dest="types_verb", required=True, metavar="VERB")
    verb(type_verbs, "list", "list job types").set_defaults(run=cli.cmd_types_list)
    register = verb(type_verbs, "register", "create or update a job type")
    register.add_argument("name")
    register.add_argument("handler", help="package.module:function")
    register.add_argument("--queue", default="default")
    register.add_argument("--priority", type=int_range(-1000, 1000), default=0)
    register.add_argument("--max-retries", type=int_range(0, 100))
    register.add_argument("--timeout", type=cli._seconds, help="seconds")
    register.add_argument("--backoff-base", type=cli._seconds, help="seconds")
    register.add_argument("--backoff-max", type=cli._seconds, help="seconds")
    register.add_argument("--dedup-window", type=cli._seconds, help="seconds")
    register.add_argument(
        "--rate-limit", type=int_range(1, 2**31 - 1), help="jobs per --rate-period"
    )
    register.add_argument("--rate-period", type=cli._seconds, help="seconds")
    register.add_argument(
        "--execution",
        choices=("inline", "process"),
        help="where its handlers run (default: the worker's --execution)",
    )
    register.set_defaults(run=cli.cmd_types_register)

    org = verbs.add_parser("org", help="organizations", description="organizations")
    org_verbs = org.add_subparsers(dest="org_verb", required=True, metavar="VERB")
    org_create = verb(org_verbs, "create", "create an organization")
    org_create.add_argument("name")
    org_create.set_defaults(run=cli.cmd_org_create)

    user = verbs.add_parser("user", help="users", description="users")
    user_verbs = user.add_subparsers(dest="user_verb", required=True, metavar="VERB")
    user_add = verb(user_verbs, "add", "create a user and add memberships")
    user_add.add_argument("name")
    user_add.add_argument("--org", action="append", default=[], help="organization (repeatable)")
    user_add.add_argument("--role", default="member", choices=("member", "admin"))
    user_add.add_argument("--admin", action="store_true", help="a global admin")
    user_add.set_defaults(run=cli.cmd_user_add)

    from jobqueue import cli_capacity

    cli_capacity.add_verbs(verbs, verb, org_verbs, type_verbs)

    token = verbs.add_parser("token", help="API tokens", description="API tokens")
    token_verbs = token.add_subparsers(dest="token_verb", required=True, metavar="VERB")
    token_create = verb(
        token_verbs, "create", "create a token; prints its secret once (its id to stderr)"
    )
    token_create.add_argument("user")
    token_create.add_argument("--name", default="default")
    token_create.add_argument(
        "--expires-days", type=float, metavar="DAYS", help="expire after DAYS (default: never)"
    )
    token_create.set_defaults(run=cli.cmd_token_create)
    token_list = verb(token_verbs, "list", "list a user's tokens and sessions (no secrets)")
    token_list.add_argument("user", nargs="?", help="whose (default: --as USER's, or everyone's)")
    token_list.set_defaults(run=cli.cmd_token_list)
    token_revoke = verb(token_verbs, "revoke", "revoke a token")
    token_revoke.add_argument("token_id", type=JOB_ID, metavar="ID")
    token_revoke.set_defaults(run=cli.cmd_token_revoke)

    from jobqueue.cli_schedules import add_verbs as add_schedule_verbs

    add_schedule_verbs(verbs, verb, cli._json_arg)

    cleanup = verb(verbs, "cleanup", "delete finished jobs past retention, in batches")
    cleanup.add_argument(
        "--retention-days", type=number_range(0, 36500), default=7.0, help="days kept (7)"
    )
    cleanup.add_argument(
        "--batch", type=int_range(1, 100_000), default=1000, help="jobs per batch (1000)"
    )
    cleanup.set_defaults(run=cli.cmd_cleanup)
    return parser
