"""Command line of ``python -m bench``."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from bench import runner, systems
from bench.scenarios import SCENARIOS
from bench.sizes import DEFAULT, QUICK

RESULTS = Path(__file__).resolve().parent / "results"


def _names(text: str, known: list[str], what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def parse(argv: list[str] | None = None) -> runner.Options:
    all_systems = list(systems.REGISTRY)
    all_scenarios = list(SCENARIOS)
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Job systems side by side on one PostgreSQL with the same settings.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, one round (a smoke test of the harness)"
    )
    parser.add_argument(
        "--systems",
        default=",".join(all_systems),
        help=f"comma-separated, from: {', '.join(all_systems)}",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(all_scenarios),
        help=f"comma-separated, from: {', '.join(all_scenarios)}",
    )
    parser.add_argument("--dsn", help="use this existing server instead of a throwaway one")
    parser.add_argument(
        "--repetitions",
        type=int,
        help="rounds of enqueue, drain, serial and latency (default 3, quick 1)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=10,
        help="jobs a worker process may run at once, for every system",
    )
    parser.add_argument("--redis", help="Redis URL for Celery (default redis://127.0.0.1:6379)")
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="where the JSON file and drain.png go"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else DEFAULT
    if args.repetitions:
        sizes = sizes.with_repetitions(args.repetitions)
    if args.redis:
        os.environ["BENCH_REDIS_URL"] = args.redis
    scenarios = _names(args.scenarios, all_scenarios, "scenario")
    return runner.Options(
        sizes=sizes,
        quick=args.quick,
        systems=_names(args.systems, all_systems, "system"),
        scenarios=tuple(s for s in all_scenarios if s in scenarios),
        dsn=args.dsn,
        concurrency=args.concurrency,
        output=args.output,
    )


def main(argv: list[str] | None = None) -> None:
    options = parse(argv)
    payload = asyncio.run(runner.run(options))
    runner.present(payload, options)
