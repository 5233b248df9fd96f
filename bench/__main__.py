"""``python -m bench``: every system, every scenario, one throwaway PostgreSQL, one table.

Systems alternate within each repetition and the order rotates between repetitions; each
number is the median over repetitions. Sizes: ``--quick`` (a CI smoke run), the default
(under ten minutes on a 2-core machine), ``--full`` (the issue's sizes: a million finished
jobs of history).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import scenarios, server
from bench.report import print_table, write_plot
from bench.systems import ALL


@dataclass(frozen=True)
class Size:
    single: int
    batched: int
    drain: int
    processes: tuple[int, ...]
    latency: int
    history: int
    repetitions: int


SIZES = {
    "quick": Size(
        single=50, batched=2000, drain=500, processes=(1,), latency=20, history=2000, repetitions=1
    ),
    "default": Size(
        single=500,
        batched=20000,
        drain=3000,
        processes=(1, 2, 4),
        latency=100,
        history=100_000,
        repetitions=2,
    ),
    "full": Size(
        single=2000,
        batched=100_000,
        drain=20000,
        processes=(1, 2, 4),
        latency=300,
        history=1_000_000,
        repetitions=3,
    ),
}
CONCURRENCY = 10
RESULTS = Path(__file__).parent / "results"


def measure(system_cls: type[scenarios.System], admin_dsn: str, size: Size) -> dict[str, Any]:
    name = system_cls.name
    out: dict[str, Any] = {}

    def fresh(label: str):  # type: ignore[no-untyped-def]
        return server.fresh_database(admin_dsn, f"{name}_{label}")

    with fresh("enqueue") as dsn:
        system = system_cls(dsn)
        system.install()
        out |= scenarios.enqueue(system, size.single, size.batched)
    for processes in size.processes:
        with fresh(f"drain{processes}") as dsn:
            system = system_cls(dsn)
            system.install()
            result = scenarios.drain(system, size.drain, processes, CONCURRENCY)
            out[f"drain_{processes}p_per_s"] = result["drain_per_s"]
            if processes == 1:
                out |= {k: v for k, v in result.items() if k != "drain_per_s"}
    with fresh("latency") as dsn:
        system = system_cls(dsn)
        system.install()
        out |= scenarios.pickup_latency(system, size.latency)
    with fresh("pressure") as dsn:
        system = system_cls(dsn)
        system.install()
        result = scenarios.drain(system, size.drain, 1, CONCURRENCY, pressure=True)
        out["pressure_drain_per_s"] = result["drain_per_s"]
        out["pressure_dead_tuples"] = result["dead_tuples"]
    with fresh("history") as dsn:
        system = system_cls(dsn)
        system.install()
        scenarios.add_history(system, size.history)
        out["history_drain_per_s"] = scenarios.drain(system, size.drain, 1, CONCURRENCY)[
            "drain_per_s"
        ]
        out["history_enqueue_batch_per_s"] = scenarios.enqueue(system, 0, size.batched // 2)[
            "enqueue_batch_per_s"
        ]
        if name == "jobqueue":
            out |= {f"history_{k}": v for k, v in scenarios.jobqueue_reads(system).items()}
    return out


def environment(admin_dsn: str) -> dict[str, Any]:
    import os

    packages = {}
    for package in ("jobqueue", "procrastinate", "pgqueuer", "psycopg"):
        try:
            packages[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            packages[package] = "not installed"
    meminfo = (
        Path("/proc/meminfo").read_text().split("\n")[0] if Path("/proc/meminfo").exists() else ""
    )
    return {
        "cpus": os.cpu_count(),
        "memory": meminfo.split(":")[-1].strip(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": server.server_version(admin_dsn),
        "packages": packages,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    group.add_argument("--full", action="store_true", help="the issue's sizes (slow)")
    parser.add_argument("--systems", default=",".join(ALL), help="comma-separated systems")
    parser.add_argument("--dsn", help="an existing server (a database that may CREATE DATABASE)")
    args = parser.parse_args()
    size = SIZES["quick" if args.quick else "full" if args.full else "default"]
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        parser.error(f"unknown systems {unknown}; known: {sorted(ALL)}")

    started = time.perf_counter()
    with server.throwaway_server() if args.dsn is None else _given(args.dsn) as admin_dsn:
        env = environment(admin_dsn)
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for repetition in range(size.repetitions):
            order = names[repetition % len(names) :] + names[: repetition % len(names)]
            for name in order:
                print(
                    f"[{time.perf_counter() - started:6.0f}s] repetition {repetition + 1}: {name}",
                    flush=True,
                )
                runs[name].append(measure(ALL[name], admin_dsn, size))
    results = {name: scenarios.median_of(r) for name, r in runs.items()}
    elapsed = time.perf_counter() - started
    print_table(results, size.processes)
    RESULTS.mkdir(exist_ok=True)
    document = {
        "size": asdict(size),
        "environment": env,
        "elapsed_s": elapsed,
        "results": results,
        "runs": runs,
    }
    (RESULTS / "latest.json").write_text(json.dumps(document, indent=2))
    write_plot(results, size.processes, RESULTS / "drain.png")
    print(
        f"\n{elapsed:.0f} s in all; results in {RESULTS / 'latest.json'}, "
        f"plot in {RESULTS / 'drain.png'}"
    )


class _given:
    def __init__(self, dsn: str):
        self.dsn = dsn

    def __enter__(self) -> str:
        return self.dsn

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
