"""The ``jobqueue`` verbs of the capacity controls: ``queues``, ``org limit``, ``types limit``
and ``priority``. Each maps to one call of :mod:`jobqueue.capacity` (see cli.py for the
options every verb shares and the exit codes)."""

from __future__ import annotations

import argparse
from typing import Any

from jobqueue.cli import EXIT_OK, _client, _emit, _fields, _seconds, _table, out
from jobqueue.cli_parser import JOB_ID, int_range

CAP = int_range(0, 1_000_000)  # running jobs; 0 holds every job back


def cmd_queues_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        queues = client.list_queues(actor=args.actor)
    columns = ("queue", "paused", "concurrency", "organization_concurrency", "running", "queued")
    _emit(args, queues, lambda rows: _table([q.to_dict() for q in rows], columns))
    return EXIT_OK


def cmd_queues_usage(args: argparse.Namespace) -> int:
    with _client(args) as client:
        usage = client.list_queue_usage(actor=args.actor, queue=args.queue, organization=args.org)
    columns = (
        "queue",
        "organization",
        "paused",
        "queue_paused",
        "concurrency",
        "weight",
        "running",
        "queued",
    )
    _emit(args, usage, lambda rows: _table([u.to_dict() for u in rows], columns))
    return EXIT_OK


def _pause(args: argparse.Namespace, paused: bool) -> int:
    with _client(args) as client:
        control = client.pause_queue if paused else client.resume_queue
        result = control(args.queue, organization=args.org, actor=args.actor)
    who = f" for {result.organization_name}" if result.organization_name else ""
    state = "paused" if result.paused else "resumed"
    _emit(args, result, lambda r: out.print(f"queue {r.queue_name} {state}{who}"))
    return EXIT_OK


def cmd_queues_pause(args: argparse.Namespace) -> int:
    return _pause(args, True)


def cmd_queues_resume(args: argparse.Namespace) -> int:
    return _pause(args, False)


def cmd_queues_limit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        settings = client.set_queue_limits(
            args.queue,
            concurrency=args.concurrency,
            organization_concurrency=args.org_concurrency,
            actor=args.actor,
        )
    _emit(args, settings, _fields)
    return EXIT_OK


def cmd_org_limit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        settings = client.set_organization_limits(
            args.queue,
            args.name,
            concurrency=args.concurrency,
            weight=args.weight,
            actor=args.actor,
        )
    _emit(args, settings, _fields)
    return EXIT_OK


def cmd_types_limit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        settings = client.set_job_type_limits(
            args.name,
            concurrency=args.concurrency,
            start_limit=args.start_limit,
            start_period=args.start_period,
            actor=args.actor,
        )
    _emit(args, settings, _fields)
    return EXIT_OK


def cmd_priority(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.set_job_priority(args.job_id, args.priority, actor=args.actor)
    _emit(args, job, lambda j: out.print(f"job {j.id} priority {j.priority}"))
    return EXIT_OK


def add_verbs(
    verbs: argparse._SubParsersAction[Any],
    verb: Any,
    org_verbs: argparse._SubParsersAction[Any],
    type_verbs: argparse._SubParsersAction[Any],
) -> None:
    """The parsers of these verbs; ``verb`` adds one with the shared options."""
    queues = verbs.add_parser("queues", help="queues: pauses and caps", description="queues")
    queue_verbs = queues.add_subparsers(dest="queues_verb", required=True, metavar="VERB")
    verb(queue_verbs, "list", "queues with their pause, caps and jobs").set_defaults(
        run=cmd_queues_list
    )
    usage = verb(queue_verbs, "usage", "organizations in queues: pauses, caps, weights, jobs")
    usage.add_argument("--queue")
    usage.add_argument("--org")
    usage.set_defaults(run=cmd_queues_usage)
    for name, help_, handler in (
        ("pause", "no job of the queue starts (running ones finish)", cmd_queues_pause),
        ("resume", "undo pause; waiting jobs start at once", cmd_queues_resume),
    ):
        sub = verb(queue_verbs, name, help_)
        sub.add_argument("queue")
        sub.add_argument("--org", help="only this organization (default: every one)")
        sub.set_defaults(run=handler)
    limit = verb(queue_verbs, "limit", "set a queue's caps on running jobs (omitted: no cap)")
    limit.add_argument("queue")
    limit.add_argument("--concurrency", type=CAP, help="running jobs of the queue")
    limit.add_argument(
        "--org-concurrency", type=CAP, help="running jobs of each organization in it"
    )
    limit.set_defaults(run=cmd_queues_limit)

    org_limit = verb(org_verbs, "limit", "set an organization's cap and weight in a queue")
    org_limit.add_argument("name")
    org_limit.add_argument("--queue", required=True)
    org_limit.add_argument("--concurrency", type=CAP, help="its cap (default: the queue's)")
    org_limit.add_argument("--weight", type=int_range(1, 1000), default=1, help="its share (1)")
    org_limit.set_defaults(run=cmd_org_limit)

    type_limit = verb(type_verbs, "limit", "set a job type's running cap and start limit")
    type_limit.add_argument("name")
    type_limit.add_argument("--concurrency", type=CAP, help="running jobs of the type")
    type_limit.add_argument(
        "--start-limit", type=int_range(1, 1_000_000), help="starts per organization and period"
    )
    type_limit.add_argument("--start-period", type=_seconds, help="seconds")
    type_limit.set_defaults(run=cmd_types_limit)

    priority = verb(verbs, "priority", "change the priority of a job that has not started")
    priority.add_argument("job_id", type=JOB_ID, metavar="ID")
    priority.add_argument("priority", type=int_range(-1000, 1000), metavar="PRIORITY")
    priority.set_defaults(run=cmd_priority)
